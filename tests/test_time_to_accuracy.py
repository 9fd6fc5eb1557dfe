"""Time to accuracy: known answers on hand-made metrics.jsonl lines, the run-end hook that puts
it in results.json, and mtlrun-report --tta on a hand-made sweep."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import yaml

from mtlrun.errors import MtlrunError
from mtlrun.report import time_to_accuracy as tta
from mtlrun.report.cli import main


def line(step: int, task: str, score: float | None, **extra) -> dict:
    return {"step": step, "task": task, "split": "dev", "metric": "accuracy", "score": score,
            **extra}  # fmt: skip


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# task a climbs to 1.0 at the best step 500 and drops after; b peaks before the best step
LINES = [
    line(100, "a", 0.5, train_seconds=1.0), line(100, "b", 0.2, train_seconds=1.0),
    line(200, "a", 0.8, train_seconds=2.5), line(200, "b", 0.7, train_seconds=2.5),
    line(300, "a", 0.9, train_seconds=4.0), line(300, "b", 0.8, train_seconds=4.0),
    line(400, "a", 0.95, train_seconds=5.0), line(400, "b", 0.6, train_seconds=5.0),
    line(500, "a", 1.0, train_seconds=6.0), line(500, "b", 0.75, train_seconds=6.0),
    line(600, "a", 0.97, train_seconds=7.0), line(600, "b", 0.79, train_seconds=7.0),
]  # fmt: skip


def test_known_steps_and_seconds():
    found = tta.time_to_accuracy(LINES, best_step=500)
    assert found["a"] == {"90": {"step": 300, "seconds": 4.0}, "95": {"step": 400, "seconds": 5.0},
                          "99": {"step": 500, "seconds": 6.0}}  # fmt: skip
    # b's reference is its score at the best checkpoint (0.75), not its own maximum (0.8):
    # 0.7 / 0.75 = 0.933 reaches 90 % at step 200, 0.8 / 0.75 reaches 95 and 99 % at 300
    assert found["b"] == {"90": {"step": 200, "seconds": 2.5}, "95": {"step": 300, "seconds": 4.0},
                          "99": {"step": 300, "seconds": 4.0}}  # fmt: skip


def test_order_of_lines_does_not_matter_and_no_timing_gives_null_seconds():
    lines = [{k: v for k, v in r.items() if k != "train_seconds"} for r in reversed(LINES)]
    found = tta.time_to_accuracy(lines, best_step=500, thresholds=(90,))
    assert found == {"a": {"90": {"step": 300, "seconds": None}},
                     "b": {"90": {"step": 200, "seconds": None}}}  # fmt: skip


def test_lower_is_better_uses_final_over_score():
    lines = [line(s, "err", x) for s, x in [(1, 0.5), (2, 0.3), (3, 0.21), (4, 0.2), (5, 0.25)]]
    found = tta.time_to_accuracy(lines, best_step=4, higher_is_better={"err": False})
    # 0.2 / 0.21 = 0.952: 90 and 95 % at step 3; 99 % needs <= 0.2020: step 4
    assert [found["err"][f]["step"] for f in ("90", "95", "99")] == [3, 3, 4]
    # read as higher-is-better, 0.5 / 0.2 >= 0.9 at once: the direction matters
    assert tta.time_to_accuracy(lines, best_step=4)["err"]["99"]["step"] == 1


@pytest.mark.parametrize("final", [0.0, -0.1, None])
def test_no_positive_reference_gives_null(final):
    lines = [line(1, "mcc", -0.3), line(2, "mcc", 0.4), line(3, "mcc", final)]
    assert tta.time_to_accuracy(lines, best_step=3) == {"mcc": {"90": None, "95": None, "99": None}}


def test_undefined_scores_are_skipped_and_missing_best_step_gives_null():
    lines = [line(1, "auc", None), line(2, "auc", 0.95), line(3, "auc", 1.0)]
    assert tta.time_to_accuracy(lines, best_step=3)["auc"]["90"]["step"] == 2
    assert tta.time_to_accuracy(lines, best_step=7)["auc"]["90"] is None  # no line at step 7


def test_read_dev_lines_skips_test_lines_and_blank_lines(tmp_path: Path):
    path = write_jsonl(tmp_path / "metrics.jsonl", [*LINES[:2], {**LINES[0], "split": "test"}])
    path.write_text(path.read_text() + "\n")
    assert tta.read_dev_lines(path) == LINES[:2]


@pytest.mark.parametrize(
    "text, says",
    [
        ('{"step": 1, "task": "a", "split": "dev", "score": 0}\n{"step": 2', "line 2: not JSON"),
        ('{"step": 1, "task": "a", "split": "dev"}\n', "line 1: no score"),
        ('[1, 2]\n', "line 1: no step, task, split, score"),
        ('{"step": "1", "task": "a", "split": "dev", "score": 0.5}\n', "not an integer"),
    ],
)  # fmt: skip
def test_damaged_file_is_one_line_error(tmp_path: Path, text: str, says: str):
    (tmp_path / "metrics.jsonl").write_text(text)
    with pytest.raises(MtlrunError, match=says) as e:
        tta.read_dev_lines(tmp_path / "metrics.jsonl")
    assert "\n" not in str(e.value)


def test_missing_file_is_one_line_error(tmp_path: Path):
    with pytest.raises(MtlrunError, match="metrics.jsonl: no such file"):
        tta.read_dev_lines(tmp_path / "metrics.jsonl")


def test_add_to_tasks_reads_the_run_log(tmp_path: Path):
    path = write_jsonl(tmp_path / "metrics.jsonl", LINES)
    per_task = {"a": {"dev": 1.0, "higher_is_better": True}, "b": {"dev": 0.75}}
    out = tta.add_to_tasks(per_task, path, best_step=500)
    assert out is per_task
    assert per_task["a"]["time_to_accuracy"]["95"] == {"step": 400, "seconds": 5.0}
    assert per_task["b"]["time_to_accuracy"]["90"]["step"] == 200


def test_add_to_tasks_never_fails_a_run(tmp_path: Path, caplog):
    (tmp_path / "metrics.jsonl").write_text("not json\n")
    per_task = {"a": {"dev": 1.0}}
    with caplog.at_level(logging.WARNING, logger="mtlrun"):
        assert tta.add_to_tasks(per_task, tmp_path / "metrics.jsonl", 1) == {"a": {"dev": 1.0}}
    assert "time to accuracy left out" in caplog.text and "line 1: not JSON" in caplog.text


def result(steps: dict[str, tuple[int, float | None] | None]) -> dict:
    """results.json with each task's 90 % hit (step, seconds); None: not reached."""
    return {"tasks": {t: {"dev": 0.5, "test": 0.5, "time_to_accuracy": {
        "90": None if hit is None else {"step": hit[0], "seconds": hit[1]}}}
        for t, hit in steps.items()}}  # fmt: skip


def test_sweep_table_cells():
    runs = [
        ("uniform", "0", result({"a": (100, 1.0), "b": (300, None)})),
        ("uniform", "1", result({"a": (300, 3.0), "b": None})),
        ("qls", "2", result({"a": (200, 2.0), "b": (100, 1.0)})),
    ]
    header, rows = tta.sweep_table(runs, thresholds=(90,))
    assert header == ["task", "reached", "uniform", "qls"]
    sd = math.sqrt(2 * 100**2)  # sample sd of 100 and 300
    assert rows[0] == ["a", "90 %", f"200 ± {sd:.0f} (2.0 s)", "200 (2.0 s)"]
    # b: one uniform run did not reach it; the other logged no seconds
    assert rows[1] == ["b", "90 %", "300 [1/2]", "100 (1.0 s)"]
    _, rows = tta.sweep_table([runs[1]], thresholds=(90,))
    assert rows[1] == ["b", "90 %", "— [0/1]"]
    csv_lines = tta.to_csv(runs, thresholds=(90,)).splitlines()
    assert csv_lines[0] == "column,run,task,reached,step,seconds"
    assert csv_lines[1:] == ["uniform,0,a,90,100,1.0", "uniform,0,b,90,300,",
                             "uniform,1,a,90,300,3.0", "uniform,1,b,90,,",
                             "qls,2,a,90,200,2.0", "qls,2,b,90,100,1.0"]  # fmt: skip
    # a run from before time to accuracy: counted as a run without it
    header, rows = tta.sweep_table([*runs, ("qls", "3", {"tasks": {"a": {"dev": 1}}})], (90,))
    assert rows[0][3] == "200 (2.0 s) [1/2]"


def test_report_tta_writes_its_own_files_and_leaves_the_report_alone(tmp_path: Path, capsys):
    sweep = tmp_path / "sweep"
    for i, (sched, hit) in enumerate([("uniform", (100, 1.0)), ("qls", (200, None))]):
        d = sweep / str(i)
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"scheduler={sched}"]))
        res = result({"a": hit}) | {"aggregate": {"dev": 0.5, "test": 0.5}, "best_step": 1,
                                    "steps": 1}  # fmt: skip
        (d / "results.json").write_text(json.dumps(res))
    main([str(sweep), "--out", str(tmp_path / "plain")])
    main([str(sweep), "--out", str(tmp_path / "with"), "--tta"])
    stdout = capsys.readouterr().out
    assert "time to accuracy in" in stdout
    for name in ("report.md", "report.csv", "report.tex"):
        assert (tmp_path / "plain" / name).read_text() == (tmp_path / "with" / name).read_text()
    assert not (tmp_path / "plain" / "time_to_accuracy.md").exists()
    md = (tmp_path / "with" / "time_to_accuracy.md").read_text()
    assert "| task | reached | uniform | qls |" in md
    assert "| a | 90 % | 100 (1.0 s) | 200 |" in md
    assert "| a | 95 % | — [0/1] | — [0/1] |" in md  # these results record 90 % only
    csv_lines = (tmp_path / "with" / "time_to_accuracy.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 2 * 3 and "qls,1,a,90,200," in csv_lines
