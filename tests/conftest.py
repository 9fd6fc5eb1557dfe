from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# --- slow tests are opt-in locally; CI (.ci/run) runs them with --slow ---------------------------
SLOW_REASON = "slow: run with --slow (CI does)"
_RAN = pytest.StashKey[int]()
_SLOW_SKIPPED = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", default=False,
                     help="also run the tests marked slow (end-to-end runs of the mtlrun "
                          "command); the same as MTLRUN_SLOW=1. CI runs them.")  # fmt: skip


def run_slow(config: pytest.Config) -> bool:
    return config.getoption("--slow") or os.environ.get("MTLRUN_SLOW", "") not in ("", "0")


# The longest files of the full suite first (pytest --durations=0, slow tests included): two
# xdist workers take whole files (--dist loadfile), and a long file started last runs alone.
HEAVY_FIRST = ["test_learned_behaviour.py", "test_experiments.py", "test_preemption.py",
               "test_reliability_cli.py", "test_cli.py", "test_ddp.py", "test_bert.py",
               "test_seq2seq.py", "test_threads.py", "test_qls_cli.py"]  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    config.stash[_RAN], config.stash[_SLOW_SKIPPED] = 0, 0
    if run_slow(config):
        rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within files
        return
    skip = pytest.mark.skip(reason=SLOW_REASON)
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)
            config.stash[_SLOW_SKIPPED] += 1


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Count the tests whose body runs (a skipped test never gets here)."""
    item.config.stash[_RAN] = item.config.stash.get(_RAN, 0) + 1
    return (yield)


def _nothing_ran_but_slow_skips(config: pytest.Config) -> bool:
    if config.option.collectonly:
        return False
    return bool(config.stash.get(_SLOW_SKIPPED, 0)) and not config.stash.get(_RAN, 0)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Skipping every selected test because it is slow is not a pass: exit 5, as pytest does
    when it collects nothing."""
    if exitstatus == pytest.ExitCode.OK and _nothing_ran_but_slow_skips(session.config):
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _nothing_ran_but_slow_skips(config):
        terminalreporter.write_line(
            "no test ran: every selected test is slow and was skipped (exit status 5); "
            "run them with --slow or MTLRUN_SLOW=1",
            red=True,
        )


# A tiny synthetic experiment: a few seconds per run on 2 CPU cores. One torch thread: a model
# this small gains nothing from two, which cost 10-40 % more CPU time (the more, the busier the
# machine). Two classification tasks; `*TINY, TAGGING` adds the tagging task `entities`, whose
# span F1 (seqeval, which imports scikit-learn, scipy and pandas) adds about 3.5 s to a run.
TAGGING = "tasks.tagging_train_size=60"
TINY = [
    "tasks.train_sizes=[300,60]", "tasks.label_noise=[0.0,0.1]", "tasks.tagging_train_size=0",
    "tasks.dev_size=40", "tasks.test_size=40", "model.hidden_size=16", "model.embeddings.dim=16",
    "trainer.max_steps=60", "trainer.eval_every=20", "trainer.progress=false",
    "trainer.plots=false", "hardware.num_threads=1",
]  # fmt: skip


def scores_of(run: Path) -> dict:
    """results.json without its wall-clock timings (which differ between identical runs)."""
    results = json.loads((run / "results.json").read_text())
    assert results.pop("timing")["train_seconds"] > 0
    for task in results["tasks"].values():  # time to accuracy: keep the steps, not the seconds
        for hit in (task.get("time_to_accuracy") or {}).values():
            if hit:
                hit.pop("seconds", None)
    return results


def metric_lines(run: Path) -> list[dict]:
    """A run's metrics.jsonl without the wall-clock timings, which differ between identical runs."""
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    for x in lines:
        for key in ("train_seconds", "signal_seconds", "policy_seconds"):
            x.pop(key, None)
    return lines


def compose_run(*overrides: str):
    """The typed config that `mtlrun *overrides` runs, composed in this process."""
    from hydra import compose, initialize_config_dir

    from mtlrun.config import register_configs, validate
    from mtlrun.paths import config_dir

    register_configs()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return validate(compose("config", overrides=list(overrides)))


def tiny_trainer(run_dir: Path, *overrides: str, base: list[str] = TINY):
    """The Trainer of `base` (TINY) + overrides, writing to run_dir (no learning phase)."""
    from mtlrun.experiment import build_trainer

    return build_trainer(compose_run(*base, *overrides), run_dir)


def mtlrun(args: list[str], cwd: Path, check: bool = True, process: bool = False):
    """Run the `mtlrun` command as a user would: its real entry point with this argv, in cwd,
    stdout and stderr captured, and its exit status. In this process by default (a new python
    spends about 3 s importing torch before it does anything); `process=True` runs the installed
    executable, for the tests about what a shell sees."""
    if process:
        env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
        exe = Path(sys.executable).with_name("mtlrun")
        proc = subprocess.run([str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True)
    else:
        proc = _in_process(args, cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"mtlrun {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _in_process(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`mtlrun *args` as `mtlrun.cli.main()` in this process; what a run changes for the
    process (working directory, argv, environment, logging, signal handlers, torch threads,
    Hydra's singletons) is put back."""
    import signal

    import torch
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from mtlrun.cli import main

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
    handlers = {s: signal.getsignal(s) for s in signals}
    root, ours = logging.getLogger(), logging.getLogger("mtlrun")
    root_handlers, root_level, our_level = list(root.handlers), root.level, ours.level
    threads = torch.get_num_threads()
    out, err, status = io.StringIO(), io.StringIO(), 0
    GlobalHydra.instance().clear()
    try:
        with (pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out),
              contextlib.redirect_stderr(err)):  # fmt: skip
            mp.chdir(cwd)
            mp.setattr(sys, "argv", ["mtlrun", *args])
            mp.setenv("HYDRA_FULL_ERROR", "0")
            main()
    except SystemExit as e:  # what the interpreter would make of it
        if isinstance(e.code, str):
            err.write(e.code + "\n")
        status = e.code if isinstance(e.code, int) else int(e.code is not None)
    finally:
        torch.set_num_threads(threads)
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None
        for h in root.handlers:
            if h not in root_handlers:
                h.close()  # the run's mtlrun.log
        root.handlers[:] = root_handlers
        root.setLevel(root_level)
        ours.setLevel(our_level)
        for s, handler in handlers.items():
            signal.signal(s, handler)
    return subprocess.CompletedProcess(["mtlrun", *args], status, out.getvalue(), err.getvalue())


def kill_when(args: list[str], cwd: Path, run_dir: Path, marker: Path) -> None:
    """Start `mtlrun *args` in run_dir and SIGKILL it as soon as `marker` exists."""
    exe = Path(sys.executable).with_name("mtlrun")
    proc = subprocess.Popen([str(exe), *args, f"hydra.run.dir={run_dir}"], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.kill()  # a no-op once reaped: never a signal to a reused pid
    proc.wait()


@pytest.fixture
def cache_dir(tmp_path: Path) -> str:
    return f"cache_dir={tmp_path / 'cache'}"


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory) -> Path:
    """`mtlrun -m scheduler=uniform,proportional seed=1,2` on TINY (jobs 0-3, uniform first),
    run once for the tests that only read it (test_cli, test_report)."""
    tmp = tmp_path_factory.mktemp("tiny_sweep")
    sweep = tmp / "sweep"
    mtlrun(["-m", "scheduler=uniform,proportional", "seed=1,2", *TINY,
            f"cache_dir={tmp / 'cache'}", f"hydra.sweep.dir={sweep}"], cwd=tmp)  # fmt: skip
    return sweep


def save_tiny_bert(directory: Path, texts: list[str]) -> Path:
    """A tiny random BERT (2 layers, hidden 32) with a WordPiece vocabulary trained on `texts`,
    saved with save_pretrained: what `model=bert model.name=<dir>` loads, offline."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials)
    )
    vocab = dict(sorted(wordpiece.get_vocab().items(), key=lambda kv: kv[1]))
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True)  # vocab=, not vocab_file=
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def model_for(encoder, kinds: list, num_labels: list[int], crf: bool = False):
    """A MultiTaskModel over `encoder` with the heads the task kinds build for tasks of these
    kinds and label counts (what build_model does from real tasks)."""
    from types import SimpleNamespace

    from mtlrun.kinds import KINDS, HeadContext
    from mtlrun.models.multitask import MultiTaskModel

    cfg, context = SimpleNamespace(crf=crf), HeadContext()
    tasks = [
        SimpleNamespace(kind=kind, num_labels=n) for kind, n in zip(kinds, num_labels, strict=True)
    ]
    heads = [KINDS[t.kind].head(encoder, t, cfg, context) for t in tasks]
    for task, head in zip(tasks, heads, strict=True):
        KINDS[task.kind].finish_head(head, task, cfg)
    return MultiTaskModel(encoder, heads)
