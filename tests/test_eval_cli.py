"""mtlrun-eval: a run directory alone rebuilds the best model and scores it as the run did."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TAGGING, TINY, mtlrun

from mtlrun.eval_cli import evaluate_run


@pytest.mark.slow
def test_the_run_directory_alone_rescores_the_best_model(tmp_path):
    run = tmp_path / "run"
    mtlrun([*TINY, TAGGING, f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run}"],
           cwd=tmp_path)  # fmt: skip
    (tmp_path / "cache").rename(tmp_path / "gone")  # no cached vocabulary to lean on
    recorded = json.loads((run / "results.json").read_text())["tasks"]
    for split in ("test", "dev"):
        rows = evaluate_run(run, split, None, None)
        assert [r[0] for r in rows] == list(recorded)
        for name, metric, score, before in rows:
            assert metric == recorded[name]["metric"]
            assert score == pytest.approx(recorded[name][split], abs=1e-9) and before == score
    assert [r[0] for r in evaluate_run(run, "test", ["sent1"], None)] == ["sent1"]
    exe = Path(sys.executable).with_name("mtlrun-eval")
    shown = subprocess.run([str(exe), str(run)], capture_output=True, text=True)
    assert shown.returncode == 0 and "sent0" in shown.stdout and "results.json (%)" in shown.stdout
    lines = tmp_path / "lines.txt"
    lines.write_text("w1 w2 w3\nw4 w5\n")
    for task, check in [("sent1", lambda out: out in ("negative", "positive")),
                        ("entities", None)]:  # fmt: skip
        got = subprocess.run([str(exe), str(run), "--predict", str(lines), "--tasks", task],
                             capture_output=True, text=True)  # fmt: skip
        assert got.returncode == 0, got.stderr
        outs = got.stdout.splitlines()
        assert len(outs) == 2  # one line out per line in
        if check:
            assert all(check(o) for o in outs), outs
        else:  # a tag per word
            assert [len(o.split()) for o in outs] == [3, 2]
    mistakes = [([str(run), "--tasks", "nope"], "--tasks: nope not in this run"),
                ([str(tmp_path)], "not an mtlrun run directory (no run.json)")]  # fmt: skip
    for args, message in mistakes:
        bad = subprocess.run([str(exe), *args], capture_output=True, text=True)
        assert bad.returncode == 2 and bad.stderr.startswith("mtlrun-eval: error: ")
        assert message in bad.stderr
        assert bad.stderr.count("\n") == 1
