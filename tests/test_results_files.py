"""The run's result files: strict JSON, and a diverged task marked as not a result."""

import json
import math

from mtlrun.report.results import DIVERGED_MARK, write_results


def results(**extra) -> dict:
    tasks = {
        "a": {"metric": "accuracy", "dev": 0.5, "test": 0.25},
        "b": {"metric": "roc_auc", "dev": math.nan, "test": 0.75},
    }
    return {"tasks": tasks, "aggregate": {"dev": 0.5, "test": 0.5}, "best_step": 20,
            "steps": 60, "collapse": None, **extra}  # fmt: skip


def test_results_json_is_strict_json(tmp_path):
    write_results(tmp_path, results())

    def refuse(token: str):
        raise AssertionError(f"non-JSON constant {token}")

    saved = json.loads((tmp_path / "results.json").read_text(), parse_constant=refuse)
    assert saved["tasks"]["b"]["dev"] is None and saved["tasks"]["b"]["test"] == 0.75


def test_a_blown_up_task_and_skipped_updates_are_marked(tmp_path):
    write_results(tmp_path, results(blown_up={"a": {"step": 20, "loss": 3.2e6}},
                                     skipped_steps=7))  # fmt: skip
    md = (tmp_path / "results.md").read_text()
    assert f"| a {DIVERGED_MARK} |" in md and f"| average {DIVERGED_MARK} |" in md
    assert "| b |" in md  # only the diverged task is marked
    assert f"{DIVERGED_MARK} a: dev loss 3.2e+06 at step 20" in md
    assert "7 of 60 updates were skipped" in md


def test_a_clean_run_has_no_marks(tmp_path):
    write_results(tmp_path, results(blown_up=None, skipped_steps=0))
    md = (tmp_path / "results.md").read_text()
    assert DIVERGED_MARK not in md and "skipped" not in md


def test_every_metric_a_task_reports_gets_its_own_named_row(tmp_path):
    r = results()
    r["tasks"]["a"]["metrics"] = {"dev": {"accuracy": 0.5, "binary_f1": 0.625},
                                  "test": {"accuracy": 0.25, "binary_f1": 0.375}}  # fmt: skip
    write_results(tmp_path, r)
    md = (tmp_path / "results.md").read_text().splitlines()
    rows = [ln for ln in md if ln.startswith("| a ") or ln.startswith("| average")]
    assert rows == ["| a | accuracy | 50.00 | 25.00 |", "| a | binary_f1 | 62.50 | 37.50 |",
                    "| average |  | 50.00 | 50.00 |"]  # fmt: skip
