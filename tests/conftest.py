from __future__ import annotations

import os
import subprocess
import sys
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


@pytest.fixture
def cache_dir(tmp_path: Path) -> str:
    return f"cache_dir={tmp_path / 'cache'}"
