"""mtlrun-eval: a run directory alone rebuilds the best model and scores it as the run did."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TAGGING, TINY, mtlrun

from mtlrun.eval_cli import evaluate_run, main


@pytest.mark.slow
def test_the_run_directory_alone_rescores_the_best_model(tmp_path, capsys):
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
        capsys.readouterr()
        main([str(run), "--predict", str(lines), "--tasks", task])  # the command's code, here
        outs = capsys.readouterr().out.splitlines()
        assert len(outs) == 2  # one line out per line in
        if check:
            assert all(check(o) for o in outs), outs
        else:  # a tag per word
            assert [len(o.split()) for o in outs] == [3, 2]
    bad = subprocess.run([str(exe), str(run), "--tasks", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.startswith("mtlrun-eval: error: --tasks: nope not in this run")
    assert bad.stderr.count("\n") == 1  # one line, no traceback
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("mtlrun-eval: error: ")
    assert "not an mtlrun run directory (no run.json)" in err and err.count("\n") == 1
