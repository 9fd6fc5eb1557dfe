"""Over the real 16-domain corpus in ../shared/data; skipped when it is absent."""

import json

import pytest
from conftest import SHARED_DATA, mtlrun

from mtlrun.config import MultiDomain16Config
from mtlrun.tasks import load_tasks

DATA = SHARED_DATA / "fdu_mtl_16domain"
pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not DATA.is_dir(), reason=f"real data not found at {DATA}"),
]

# SEED-000 Table 1: training examples per domain (dev 200, test 400 everywhere)
TRAIN_SIZES = {"baby": 1300, "camera_photo": 1397, "electronics": 1398, "magazines": 1370,
               "software": 1315}  # fmt: skip


def test_sixteen_domains_have_the_papers_splits():
    tasks = load_tasks(MultiDomain16Config(path=str(DATA)), seed=0)
    assert len(tasks) == 16
    for t in tasks:
        assert len(t.train) == TRAIN_SIZES.get(t.name, 1400), t.name
        assert (len(t.dev), len(t.test)) == (200, 400), t.name
        assert 0.4 < sum(t.train.labels) / len(t.train) < 0.6  # roughly balanced
    mr = next(t for t in tasks if t.name == "MR")
    assert any("\x85" in w or "é" in w for s in mr.train.tokens for w in s)  # Latin-1 survived


@pytest.mark.slow
def test_short_run_on_two_real_domains(tmp_path, cache_dir):
    run = tmp_path / "run"
    mtlrun(["tasks=multidomain16", "tasks.domains=[books,MR]", f"data_dir={SHARED_DATA}",
            "model.hidden_size=16", "model.embeddings.dim=16", "model.max_length=60",
            "trainer.max_steps=40", "trainer.eval_every=20", "trainer.progress=false",
            "trainer.plots=false",
            "hardware.num_threads=1", cache_dir, f"hydra.run.dir={run}"], cwd=tmp_path)  # fmt: skip
    results = json.loads((run / "results.json").read_text())
    assert set(results["tasks"]) == {"books", "MR"}
