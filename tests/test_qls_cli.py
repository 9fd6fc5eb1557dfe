"""QLS from the command line: learn then run, reuse a saved policy, resume a killed learning
phase."""

import json

import pytest
import torch
from conftest import TAGGING, TINY, kill_when, mtlrun, scores_of

pytestmark = pytest.mark.slow  # every test here runs the mtlrun command end to end

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
    assert policy["tasks"] == ["sent0", "sent1"]
    assert [len(h) for h in policy["hard"]] == [16, 16]
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
    proc = mtlrun([*TINY, *QLS_TINY, cache_dir, TAGGING, policy],
                  cwd=tmp_path, check=False)  # fmt: skip
    assert proc.returncode == 2
    assert "was learned for tasks" in proc.stderr


def test_resume_a_killed_learning_phase(learned, tmp_path):
    """Killed after the first of the two learning episodes, resumed: the same policy, schedule
    and scores as the uninterrupted run of the same config (`learned`)."""
    args = [*TINY, *QLS_TINY, f"cache_dir={learned.parent / 'cache'}"]
    killed = tmp_path / "killed"
    learn = killed / "checkpoints" / "learn.pt"
    kill_when(args, tmp_path, killed, learn)
    assert learn.exists() and not (killed / "policy.pt").exists(), "not killed while learning"
    assert torch.load(learn, weights_only=False)["episode"] == 1  # one episode left to learn

    mtlrun([f"trainer.resume={killed}", f"hydra.run.dir={tmp_path / 'log'}"], cwd=tmp_path)
    assert scores_of(killed)["tasks"] == scores_of(learned)["tasks"]
    assert (killed / "schedule.csv").read_text() == (learned / "schedule.csv").read_text()
    a = torch.load(killed / "policy.pt", weights_only=False)["q"]
    b = torch.load(learned / "policy.pt", weights_only=False)["q"]
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
