from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# A tiny synthetic experiment: a few seconds per run on 2 CPU cores.
TINY = [
    "tasks.train_sizes=[300,60]", "tasks.label_noise=[0.0,0.1]", "tasks.tagging_train_size=60",
    "tasks.dev_size=40", "tasks.test_size=40", "model.hidden_size=16", "model.embeddings.dim=16",
    "trainer.max_steps=60", "trainer.eval_every=20", "trainer.progress=false",
]  # fmt: skip


def mtlrun(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run the installed `mtlrun` command, as a user would."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    exe = Path(sys.executable).with_name("mtlrun")
    proc = subprocess.run([str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"mtlrun {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def kill_when(args: list[str], cwd: Path, run_dir: Path, marker: Path) -> None:
    """Start `mtlrun *args` in run_dir and SIGKILL it as soon as `marker` exists."""
    exe = Path(sys.executable).with_name("mtlrun")
    proc = subprocess.Popen([str(exe), *args, f"hydra.run.dir={run_dir}"], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture
def cache_dir(tmp_path: Path) -> str:
    return f"cache_dir={tmp_path / 'cache'}"


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
