"""QLS from the command line: learn then run, reuse a saved policy, resume a killed learning
phase."""

import json

import pytest
import torch
from conftest import TINY, kill_when, mtlrun
from test_cli import scores_of

QLS_TINY = ["scheduler=qls", "scheduler.episodes=2", "scheduler.decision_every=10",
            "scheduler.hard_after_steps=20", "scheduler.learning_starts=4",
            "scheduler.replay_batch=4", "scheduler.target_sync=5"]  # fmt: skip


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """One learn-then-run QLS run shared by the tests below."""
    tmp = tmp_path_factory.mktemp("qls")
    mtlrun([*TINY, *QLS_TINY, f"cache_dir={tmp / 'cache'}", f"hydra.run.dir={tmp / 'run'}"],
           cwd=tmp)  # fmt: skip
    return tmp / "run"


def test_learn_then_run_and_reuse_the_policy(learned, tmp_path, cache_dir):
    policy = torch.load(learned / "policy.pt", weights_only=False)
    assert policy["tasks"] == ["sent0", "sent1", "entities"]
    assert [len(h) for h in policy["hard"]] == [16, 16, 16]
    timing = json.loads((learned / "results.json").read_text())["timing"]
    assert timing["learn_seconds"] > 0 and 0 < timing["learn_signal_seconds"] < timing[
        "learn_seconds"]  # fmt: skip
    assert not (learned / "checkpoints" / "learn.pt").exists()
    lines = [json.loads(x) for x in (learned / "metrics.jsonl").read_text().splitlines()]
    assert "q" in lines[0]["scheduler"] and lines[0]["signal_seconds"] > 0

    reused = tmp_path / "reused"
    proc = mtlrun([*TINY, *QLS_TINY, cache_dir, f"scheduler.policy={learned / 'policy.pt'}",
                   f"hydra.run.dir={reused}"], cwd=tmp_path)  # fmt: skip
    assert "learning phase" not in proc.stderr
    # the run phase depends on the policy only: identical schedule and scores
    assert (reused / "schedule.csv").read_text() == (learned / "schedule.csv").read_text()
    a, b = scores_of(learned), scores_of(reused)
    assert a["tasks"] == b["tasks"]


def test_policy_from_other_tasks_is_refused(learned, tmp_path, cache_dir):
    policy = f"scheduler.policy={learned / 'policy.pt'}"
    proc = mtlrun([*TINY, *QLS_TINY, cache_dir, "tasks.tagging_train_size=0", policy],
                  cwd=tmp_path, check=False)  # fmt: skip
    assert proc.returncode == 2
    assert "was learned for tasks" in proc.stderr


def test_resume_a_killed_learning_phase(tmp_path, cache_dir):
    args = [*TINY, *QLS_TINY, cache_dir, "scheduler.episodes=3", "trainer.max_steps=100",
            "trainer.eval_every=50"]  # fmt: skip
    full = tmp_path / "full"
    mtlrun([*args, f"hydra.run.dir={full}"], cwd=tmp_path)

    killed = tmp_path / "killed"
    learn = killed / "checkpoints" / "learn.pt"
    kill_when(args, tmp_path, killed, learn)
    assert learn.exists() and not (killed / "policy.pt").exists(), "not killed while learning"

    mtlrun([f"trainer.resume={killed}", cache_dir, f"hydra.run.dir={tmp_path / 'log'}"],
           cwd=tmp_path)  # fmt: skip
    assert scores_of(killed)["tasks"] == scores_of(full)["tasks"]
    assert (killed / "schedule.csv").read_text() == (full / "schedule.csv").read_text()
    a = torch.load(killed / "policy.pt", weights_only=False)["q"]
    b = torch.load(full / "policy.pt", weights_only=False)["q"]
    assert all(torch.equal(a[n], b[n]) for n in a)
