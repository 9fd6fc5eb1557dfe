"""The paper-table presets (conf/experiment/), debug=tiny, and mtlrun-reproduce's plan, reuse and
comparison (mtlrun/reproduce.py)."""

from __future__ import annotations

import csv
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA, compose_run

from mtlrun import reproduce
from mtlrun.config import LSTMConfig
from mtlrun.paths import config_dir
from mtlrun.reproduce import ReproduceError, make_plan, parse_paper, scheduler_ids

EXPERIMENTS = sorted(p.stem for p in (Path(config_dir()) / "experiment").glob("*.yaml"))
CPU = [e for e in EXPERIMENTS if e.endswith("_cpu")]
# every table reproduced: each has a full form (the paper's sizes, for GPUs) and a cpu form
TABLES = ["qls_table2", "qls_table3", "qls_table5", "qls_table6", "jean2019_table1",
          "sundararaman2021_table1", "sundararaman2021_table2", "fang_table2"]  # fmt: skip


@functools.cache
def paper_of(name: str, *overrides: str):
    """(parsed paper block, typed config) of `mtlrun experiment=<name> *overrides`; composed
    once per session (about a second each on a busy machine)."""
    cfg = compose_run(f"experiment={name}", *overrides)
    return parse_paper(cfg.paper, scheduler_ids()), cfg


def test_every_table_has_a_full_and_a_cpu_form():
    for table in TABLES:
        assert table in EXPERIMENTS
        assert f"{table}_cpu" in EXPERIMENTS, f"{table} has no cpu form"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_its_paper_block_is_well_formed(name):
    paper, cfg = paper_of(name)
    assert cfg.paper is not None and paper.title and paper.authors
    ids = scheduler_ids()
    runnable = [m for m in paper.methods.values() if not m.skip]
    assert runnable, "a table with nothing to run"
    for m in paper.methods.values():
        assert m.skip or m.scheduler in ids, f"{m.name}: scheduler {m.scheduler!r}"
        if m.search:
            assert m.search["scheduler"] in ids
    high = 1.0 if paper.unit == "fraction" else 100.0
    for block in paper.blocks:
        assert set(block.rows) <= set(paper.methods)
        for rows in block.rows.values():
            for row, value in rows.items():
                assert 0 < value <= high, f"{row}: {value} is not a {paper.unit}"
                # every row is shown with the paper's label and has a task to read
                assert row in paper.row_labels, f"{row} has no label"
                assert paper.setting(row).task
    assert paper.seeds and all(isinstance(s, int) for s in paper.seeds)


_COMPOSED: dict[str, set] = {}  # a table -> the method and suite overrides composed so far


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_cell_of_the_sweep_composes_and_validates(name, tmp_path):
    """What each planned `mtlrun` command would compose: a method's overrides (scheduler keys,
    step modes) and each row's suite all exist and type-check. One compose per method and one
    per suite of a table, its full and cpu forms together (slow: about a second each; each
    form's own settings compose in test_experiment_composes_and_its_paper_block_is_well_formed)."""
    paper, _ = paper_of(name)
    plan = make_plan(name, paper, tmp_path, [f"data_dir={SHARED_DATA}"], n_seeds=1)
    seen = _COMPOSED.setdefault(name.removesuffix("_cpu"), set())
    per_run = ("scheduler.task=", "scheduler.baselines=", "scheduler.path=", "transfer.task=")
    for cell in plan.cells:  # a baseline per task, a transfer per row: one shape, one compose
        method = tuple(o for o in cell.overrides
                       if o.startswith("scheduler") and not o.startswith(per_run))  # fmt: skip
        suite = tuple(o for o in cell.overrides if o.startswith("tasks"))
        if method in seen and suite in seen:
            continue
        seen |= {method, suite}
        cfg = compose_run(*cell.overrides)
        assert cfg.seed == 1 and cfg.paper is not None


_SUITE_TASKS: dict[str, set[str] | None] = {}  # a composed tasks config -> its task names


@functools.cache  # a table's rows mostly share one suite: compose it once, not once per row
def suite_tasks(name: str, overrides: tuple[str, ...]) -> set[str] | None:
    """The names of the tasks that `experiment=<name> *overrides` loads from the local data;
    None when the local data lacks them (a suite that needs the hub, a translate-train set)."""
    from omegaconf import OmegaConf

    from mtlrun.errors import DataError
    from mtlrun.tasks import load_tasks

    cfg = compose_run(f"experiment={name}", *overrides, f"data_dir={SHARED_DATA}")
    key = OmegaConf.to_yaml(OmegaConf.structured(cfg.tasks))
    if key not in _SUITE_TASKS:
        try:
            _SUITE_TASKS[key] = {t.name for t in load_tasks(cfg.tasks, 0, cfg.data_dir)}
        except DataError:
            _SUITE_TASKS[key] = None
    return _SUITE_TASKS[key]


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="no local data (conftest.SHARED_DATA)")
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_task_a_table_names_is_a_task_of_its_suite(name):
    """Loads each row's suite from the local data (slow: seconds per suite, cached)."""
    paper, _ = paper_of(name)
    checked = 0
    for block in paper.blocks:
        for method, rows in block.rows.items():
            for row in rows:
                setting = paper.setting(row, method)
                if setting.task == "average":
                    continue
                names = suite_tasks(name, tuple(setting.overrides))
                if names is not None:
                    assert setting.task in names, f"{method} / {row}: {setting.task} not in {names}"
                    checked += 1
    names = suite_tasks(name, ())
    if names is not None:
        assert set(paper.baseline_tasks) <= names
    if name.startswith("jean2019"):  # no En-Fr, no WMT'14 training data offline
        assert checked == 0
    elif name.endswith("_cpu"):  # the cpu forms run on the local data
        assert checked > 0


def test_paper_numbers_are_the_papers():
    """A few cells read against the papers' tables (the files were generated from them)."""
    qls2, _ = paper_of("qls_table2")
    assert qls2.blocks[0].rows["QLS (ours)"]["average"] == 91.5
    assert qls2.blocks[0].rows["Uniform (baseline)"]["MR"] == 74.7
    assert qls2.blocks[0].rows["DTP"]["kitchen_housewares"] == 87.2
    qls5, _ = paper_of("qls_table5")
    assert qls5.blocks[0].rows["+ QLS (ours)"] == {"chunking": 95.91, "ner": 91.02, "pos": 97.46}
    qls6, _ = paper_of("qls_table6")
    assert qls6.blocks[0].rows["Ada."]["mt_pos_parse"] == 21.5
    assert qls6.blocks[0].rows["Baseline NMT (single task)"] == {"mt": 19.30}
    jean, _ = paper_of("jean2019_table1")
    test, dev = jean.blocks
    assert (test.split, dev.split) == ("test", "dev")
    assert test.rows["Explicit - Constant (75% En-Fr)"] == {"en_de": 26.16, "en_fr": 41.00}
    assert dev.rows["En-Fr Baseline"] == {"en_fr": 34.71}
    s1, _ = paper_of("sundararaman2021_table1")
    assert s1.unit == "fraction" and s1.blocks[0].rows["Multi-task time-invariant"]["hi"] == 0.7127
    s2, _ = paper_of("sundararaman2021_table2")
    assert s2.blocks[0].rows["Multi-task proportional"]["rte_mnli"] == 0.7401
    fang, _ = paper_of("fang_table2")
    by = {(b.split, b.metric): b.rows for b in fang.blocks}
    assert by["test", "roc_auc"]["Active sampling (ours, γ = 0.5)"]["average"] == 84.96
    assert by["dev", "binary_f1"]["Union sampling"]["rte"] == 68.61


def test_cpu_forms_inherit_the_papers_numbers():
    for table in TABLES:
        full, _ = paper_of(table)
        cpu, _ = paper_of(f"{table}_cpu")
        assert [b.rows for b in cpu.blocks] == [b.rows for b in full.blocks], table


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_debug_tiny_shrinks_any_experiment_and_keeps_its_data_and_table(name):
    _, plain = paper_of(name)
    cfg = compose_run(f"experiment={name}", "debug=tiny")
    assert isinstance(cfg.model, LSTMConfig)
    assert (cfg.model.name, cfg.model.hidden_size, cfg.model.embeddings.dim) == ("lstm", 16, 16)
    assert cfg.model.embeddings.path is None
    assert (cfg.trainer.max_steps, cfg.trainer.eval_every, cfg.trainer.progress) == (60, 20, False)
    assert (cfg.hardware.device, cfg.hardware.num_threads) == ("cpu", 1)
    assert cfg.tasks == plain.tasks and cfg.paper == plain.paper


def test_the_command_line_overrides_debug_tiny():
    cfg = compose_run("experiment=fang_table2_cpu", "debug=tiny", "trainer.max_steps=7")
    assert (cfg.trainer.max_steps, cfg.model.hidden_size) == (7, 16)


def test_an_experiment_overrides_the_defaults_and_the_command_line_overrides_it():
    cfg = compose_run("experiment=qls_table2_cpu")
    assert (cfg.tasks.name, cfg.model.hidden_size, cfg.trainer.max_steps) == (
        "multidomain16",
        32,
        1500,
    )
    cfg = compose_run("experiment=qls_table2_cpu", "model.hidden_size=8", "scheduler=gradnorm")
    assert (cfg.model.hidden_size, cfg.scheduler.name) == (8, "gradnorm")
    assert compose_run().paper is None  # no experiment: plain mtlrun


def test_a_misspelt_experiment_is_refused_not_ignored():
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match="experiment/qls_tabel2"):
        compose_run("experiment=qls_tabel2")


# --- the plan -----------------------------------------------------------------------------------
def test_plan_runs_single_task_baselines_first_and_hands_them_to_the_methods(tmp_path):
    paper, _ = paper_of("qls_table2_cpu")
    plan = make_plan("qls_table2_cpu", paper, tmp_path, [])
    phases = [c.phase for c in plan.cells]
    assert phases == sorted(phases, key=["baseline", "search", "run"].index)
    baselines = [c for c in plan.cells if c.phase == "baseline"]
    assert len(baselines) == 16 and all("scheduler=single" in c.overrides for c in baselines)
    file = f"scheduler.baselines={tmp_path / 'baselines.json'}"
    adaptive = plan.where["Adaptive", "books", 1]
    assert file in adaptive.overrides and adaptive.needs_baselines
    assert not any(
        o.startswith("scheduler.baselines") for o in plan.where["Random", "books", 1].overrides
    )
    # one run gives every domain's number: 16 rows + the average share the cell
    assert plan.where["Random", "MR", 1] is plan.where["Random", "average", 1]
    # Hand Crafted is skipped: no cell
    assert not any(k[0] == "Hand Crafted" for k in plan.where)


def test_a_single_task_row_and_a_baseline_with_the_same_overrides_are_one_run(tmp_path):
    paper, _ = paper_of("qls_table5_cpu")
    plan = make_plan("qls_table5_cpu", paper, tmp_path, [])
    ner = plan.where["BiLSTM+CRF", "ner", 1]
    assert ner.phase == "baseline" and "scheduler.task=ner" in ner.overrides
    assert len({c.name for c in plan.cells}) == len(plan.cells)
    assert len({c.key() for c in plan.cells}) == len(plan.cells)


def test_a_learned_schedule_is_searched_first_then_replayed(tmp_path):
    paper, _ = paper_of("sundararaman2021_table2_cpu")
    plan = make_plan("sundararaman2021_table2_cpu", paper, tmp_path, [])
    final = plan.where["Multi-task time invariant", "rte_mnli", 1]
    (search,) = final.depends
    assert search.phase == "search" and "scheduler=reinforce_policy" in search.overrides
    assert "scheduler.time_variant=false" in search.overrides
    assert f"scheduler.path={tmp_path / search.name / 'learned_schedule.json'}" in final.overrides
    # the single-task target runs once, in the suite that loads offline, for both of its rows
    assert plan.where["Single Task", "rte_qnli", 1] is plan.where["Single Task", "rte_mnli", 1]
    assert "tasks=glue_rte_mnli" in plan.where["Single Task", "rte_qnli", 1].overrides


def test_user_overrides_win_and_seeds_can_be_cut_or_extended(tmp_path):
    paper, _ = paper_of("fang_table2_cpu")
    plan = make_plan("fang_table2_cpu", paper, tmp_path, ["scheduler.rho=0.25"], n_seeds=5)
    assert plan.seeds == [1, 2, 3, 4, 5]
    active = plan.where["Active sampling (ours, γ = 0.5)", "rte", 5]
    assert "scheduler.rho=0.25" in active.overrides and "scheduler.rho=0.5" not in active.overrides
    assert make_plan("fang_table2_cpu", paper, tmp_path, [], n_seeds=1).seeds == [1]


def test_a_malformed_paper_block_is_one_message():
    good = {"title": "T", "authors": ["A"], "unit": "percent", "split": "test",
            "metric": "accuracy", "rows": {"M": {"t": 50.0}},
            "methods": {"M": {"scheduler": "uniform"}}, "sweep": {"seeds": [1]}}  # fmt: skip
    assert parse_paper(good, scheduler_ids()).methods["M"].scheduler == "uniform"
    for change, message in [
        ({"methods": {"M": {"scheduler": "no_such"}}}, "not in conf/scheduler"),
        ({"methods": {}}, "no paper.methods entry"),
        ({"rows": {"M": {"t": "high"}}}, "not a number"),
        ({"unit": "points"}, "paper.unit"),
        ({"methods": {"M": {"scheduler": "uniform", "baselines": True}}}, "baselines.tasks"),
        ({"methods": {"M": {"schedular": "uniform"}}}, "unknown key"),
        ({"sweep": {"seeds": []}}, "seeds"),
    ]:
        with pytest.raises(ReproduceError, match=message):
            parse_paper({**good, **change}, scheduler_ids())
    with pytest.raises(ReproduceError, match="no `paper:` block"):
        parse_paper(None)


# --- reuse, resume, and the comparison, on fake run directories ---------------------------------
FANG = "fang_table2_cpu"


def fake_run(directory: Path, overrides: list[str], results: dict | None) -> None:
    """What mtlrun leaves in a run directory: run.json (+ results.json when it finished)."""
    directory.mkdir(parents=True)
    (directory / "run.json").write_text(json.dumps({"overrides": overrides}))
    (directory / ".hydra").mkdir()
    if results is not None:
        (directory / "results.json").write_text(json.dumps(results))


def fang_results(auc: float, acc: float, f1: float) -> dict:
    """A glue_fang results.json with the same scores for every task (fractions)."""
    metrics = {"roc_auc": auc, "accuracy": acc, "binary_f1": f1}
    task = {"metric": "roc_auc", "dev": auc, "test": auc,
            "metrics": {"dev": metrics, "test": metrics}}  # fmt: skip
    return {"tasks": {t: dict(task) for t in ("sst2", "rte", "mrpc")},
            "aggregate": {"dev": auc, "test": auc},
            "aggregate_metrics": {m: {"dev": v, "test": v} for m, v in metrics.items()},
            "collapse": None}  # fmt: skip


def run_main(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        reproduce.main(args)
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def test_dry_run_reuses_finished_cells_resumes_unfinished_ones_and_runs_the_rest(tmp_path, capsys):
    paper, _ = paper_of(FANG)
    plan = make_plan(FANG, paper, tmp_path, [], n_seeds=2)
    uniform1 = plan.where["Uniform sampling", "rte", 1]
    union1 = plan.where["Union sampling", "rte", 1]
    fake_run(tmp_path / uniform1.name, uniform1.overrides, fang_results(0.8, 0.7, 0.6))
    fake_run(tmp_path / union1.name, union1.overrides, None)  # started, killed
    status, out, _ = run_main([FANG, "--dry-run", "--seeds", "2", "--out", str(tmp_path)], capsys)
    assert status == 0
    lines = out.splitlines()
    assert f"# reuse {tmp_path / uniform1.name} (has results.json)" in lines
    assert not any(f"hydra.run.dir={tmp_path / uniform1.name}" in ln for ln in lines)
    assert f"mtlrun trainer.resume={tmp_path / union1.name}" in lines
    new = [ln for ln in lines if ln.startswith("mtlrun experiment=")]
    assert len(new) == 6 - 2  # 3 methods x 2 seeds, less the finished and the resumed one
    assert not (tmp_path / "logs").exists()  # a dry run starts nothing


def test_method_runs_only_the_chosen_methods_and_what_they_need(tmp_path, capsys):
    out = ["--dry-run", "--seeds", "1", "--out", str(tmp_path)]
    status, text, _ = run_main([FANG, "--method", "Union sampling", *out], capsys)
    commands = [ln for ln in text.splitlines() if ln.startswith("mtlrun ")]
    assert status == 0 and len(commands) == 1 and "scheduler=union" in commands[0]
    assert sum(ln.startswith("# skip ") for ln in text.splitlines()) == 2
    # by scheduler; a method that needs baselines brings the single-task runs along
    status, text, _ = run_main(["qls_table2_cpu", "--method", "jean_explicit", *out], capsys)
    commands = [ln for ln in text.splitlines() if ln.startswith("mtlrun ")]
    assert status == 0 and len(commands) == 16 + 1 and "scheduler=jean_explicit" in commands[-1]
    assert all("scheduler=single" in c for c in commands[:16])
    status, text, _ = run_main(["qls_table2_cpu", "--method", "uniform", *out], capsys)
    assert [ln for ln in text.splitlines() if ln.startswith("mtlrun ")] == [
        ln for ln in text.splitlines() if "scheduler=uniform " in ln
    ]  # no baselines: uniform sampling does not use them
    status, text, err = run_main([FANG, "--method", "nope", *out], capsys)
    assert status == 2 and text == "" and err.count("\n") == 1
    assert err.startswith(f"mtlrun-reproduce: error: --method nope is not a method of {FANG}")
    assert "Union sampling (union)" in err


def test_cells_left_out_by_method_are_noted_in_the_table(tmp_path):
    paper, _ = paper_of(FANG)
    plan = make_plan(FANG, paper, tmp_path, [], n_seeds=1)
    done = plan.where["Uniform sampling", "sst2", 1]
    fake_run(tmp_path / done.name, done.overrides, fang_results(0.8, 0.7, 0.6))
    reproduce.inspect(plan)
    assert reproduce.select_methods(plan, ["union"]) == 1  # active; uniform finished already
    rows = [r for r in reproduce.compare(plan) if r.block.metric == "roc_auc"]
    notes = {(r.method, r.row): (r.ours, r.note) for r in rows if r.block.split == "test"}
    assert notes["Uniform sampling", "rte"] == (pytest.approx(80.0), "")  # still in the table
    assert notes["Active sampling (ours, γ = 0.5)", "rte"] == (
        None, "not run: not chosen by --method")  # fmt: skip


def test_a_directory_holding_another_runs_overrides_stops_everything(tmp_path, capsys):
    paper, _ = paper_of(FANG)
    cell = make_plan(FANG, paper, tmp_path, [], n_seeds=1).where["Union sampling", "sst2", 1]
    other = [o.replace("seed=1", "seed=9") for o in cell.overrides]
    fake_run(tmp_path / cell.name, other, fang_results(0.8, 0.7, 0.6))
    status, out, err = run_main([FANG, "--seeds", "1", "--out", str(tmp_path)], capsys)
    assert status == 2 and out == ""
    assert err.startswith("mtlrun-reproduce: error: 1 run directory holds a run made with other")
    assert "seed=1 seed=9" in err and len(err.strip().splitlines()) == 1


def test_finished_cells_are_never_rerun_and_the_table_compares_them(tmp_path, capsys, monkeypatch):
    paper, _ = paper_of(FANG)
    plan = make_plan(FANG, paper, tmp_path, [], n_seeds=2)
    scores = {
        "Uniform sampling": [(0.80, 0.70, 0.60), (0.90, 0.80, 0.70)],
        "Union sampling": [(0.85, 0.75, 0.65), (0.85, 0.75, 0.65)],
        "Active sampling (ours, γ = 0.5)": [(0.70, 0.60, 0.50), (0.72, 0.62, 0.52)],
    }
    for method, per_seed in scores.items():
        for seed, values in zip((1, 2), per_seed, strict=True):
            cell = plan.where[method, "sst2", seed]
            fake_run(tmp_path / cell.name, cell.overrides, fang_results(*values))

    def no_run(*args, **kwargs):
        raise AssertionError(f"a subprocess was launched: {args}")

    monkeypatch.setattr(subprocess, "run", no_run)
    status, out, _ = run_main([FANG, "--seeds", "2", "--out", str(tmp_path)], capsys)
    assert status == 0
    assert "6 run(s)" in out and "6 finished already" in out
    assert not (tmp_path / "logs").exists()
    rows = list(csv.DictReader((tmp_path / "reproduce.csv").open()))
    by = {(r["split"], r["metric"], r["method"], r["row"]): r for r in rows}
    r = by["test", "roc_auc", "Uniform sampling", "rte"]
    assert float(r["ours_pct"]) == pytest.approx(85.0)
    assert float(r["sd_pct"]) == pytest.approx(7.0710678, rel=1e-6)
    assert (r["n"], float(r["paper_pct"])) == ("2", 69.96)
    assert float(r["gap_pct"]) == pytest.approx(85.0 - 69.96)
    # another metric of another split, and the paper's aggregate row = our mean over tasks
    f1 = by["dev", "binary_f1", "Union sampling", "average"]
    assert float(f1["ours_pct"]) == pytest.approx(65.0) and f1["sd_pct"] == "0.0"
    assert float(f1["gap_pct"]) == pytest.approx(65.0 - 82.72)
    md = (tmp_path / "reproduce.md").read_text()
    assert "| Uniform sampling | `uniform` | RTE | 85.00 ± 7.07 | 69.96 | +15.04 |" in md
    assert "Fang" in md and "Table 2" in md


def test_a_learned_schedule_that_collapsed_or_looked_uniform_is_noted(tmp_path):
    paper, _ = paper_of(FANG)
    plan = make_plan(FANG, paper, tmp_path, [], n_seeds=2)
    active = "Active sampling (ours, γ = 0.5)"
    marks = {1: {"collapse": {"task": "sst2", "share": 0.9}}, 2: {"uniform_like": {"p_value": 0.5}}}
    for method in ("Uniform sampling", "Union sampling", active):
        for seed in (1, 2):
            cell = plan.where[method, "sst2", seed]
            results = {**fang_results(0.8, 0.7, 0.6), **(marks[seed] if method == active else {})}
            fake_run(tmp_path / cell.name, cell.overrides, results)
    notes = {(r.method, r.row): r.note for r in reproduce.compare(plan)}
    assert (
        notes[active, "rte"]
        == "† collapsed in 1 run(s); schedule like uniform sampling in 1 run(s)"
    )
    assert notes["Uniform sampling", "rte"] == ""


def test_fractions_are_compared_in_percent_and_missing_runs_are_listed(tmp_path, capsys):
    name = "sundararaman2021_table2_cpu"
    paper, _ = paper_of(name)
    plan = make_plan(name, paper, tmp_path, [], n_seeds=1)
    for cell in plan.cells:  # every run finished, except the QNLI ones (they fail offline)
        if "qnli" in " ".join(cell.overrides):
            continue
        target = "rte" if "rte" in " ".join(cell.overrides) else "mrpc"
        result = {"tasks": {target: {"metric": "accuracy", "dev": 0.5, "test": 0.6}},
                  "aggregate": {"dev": 0.5, "test": 0.6}}  # fmt: skip
        fake_run(tmp_path / cell.name, cell.overrides, result)
    rows = reproduce.compare(plan)
    by = {(r.method, r.row): r for r in rows}
    single = by["Single Task", "rte_qnli"]  # runs in the MNLI suite: it has a number
    assert (single.ours, single.paper) == (pytest.approx(60.0), pytest.approx(67.5))
    assert single.gap == pytest.approx(60.0 - 67.5)
    missing = by["Multi-task uniform", "rte_qnli"]
    assert missing.ours is None and "unfinished" in missing.note


def test_baselines_json_is_the_mean_dev_score_of_the_single_task_runs(tmp_path):
    paper, _ = paper_of("qls_table5_cpu")
    plan = make_plan("qls_table5_cpu", paper, tmp_path, [])
    for cell in (c for c in plan.cells if c.phase == "baseline"):
        task = next(o.partition("=")[2] for o in cell.overrides if o.startswith("scheduler.task="))
        dev = {"chunking": 0.8, "ner": 0.7, "pos": 0.9}[task]
        result = {"tasks": {task: {"metric": "f1", "dev": dev, "test": dev}},
                  "aggregate": {"dev": dev, "test": dev}}  # fmt: skip
        fake_run(tmp_path / cell.name, cell.overrides, result)
    assert reproduce.write_baselines(plan) is None
    assert json.loads(plan.baselines_file.read_text()) == {"chunking": 0.8, "ner": 0.7, "pos": 0.9}


def test_overrides_of_the_presets_own_groups_are_accepted(capsys, tmp_path):
    """Keys that exist only under the group option a preset chooses (jean2019's tasks are
    wmt_multilingual, the default suite is synthetic) pass the early check."""
    mine = ["tasks.en_fr.train_source=/data/train.en", "tasks.en_fr.train_target=/data/train.fr"]
    status, out, err = run_main(["jean2019_table1_cpu", *mine, "--dry-run", "--out",
                                 str(tmp_path)], capsys)  # fmt: skip
    assert status == 0, err
    commands = [ln for ln in out.splitlines() if ln.startswith("mtlrun ")]
    assert len(commands) == 7 and all(" ".join(mine) in c for c in commands)
    status, _, err = run_main(["jean2019_table1_cpu", "tasks.en_fr.train_sourse=x", "--dry-run",
                               "--out", str(tmp_path)], capsys)  # fmt: skip
    assert status == 2 and "tasks.en_fr.train_sourse" in err and err.count("\n") == 1


def test_usage_mistakes_are_one_line(capsys, tmp_path):
    for args, message in [
        (["no_such_table"], "experiment=no_such_table: no such option (did you mean "),
        ([FANG, "seed=3"], "seed is set by mtlrun-reproduce for each run; drop seed=3"),
        ([FANG, "data_dir"], "'data_dir' is not an override"),
        (
            [FANG, "trainer.max_stepz=3"],
            "trainer.max_stepz=3: trainer has no key 'max_stepz' (did you mean max_steps?)",
        ),
        ([FANG, "--seeds", "0"], "--seeds must be >= 1"),
    ]:
        status, out, err = run_main([*args, "--out", str(tmp_path)], capsys)
        assert status == 2, args
        assert err.startswith(f"mtlrun-reproduce: error: {message}"), err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


# --- the whole command ----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(
    not (SHARED_DATA / "glue").is_dir(), reason="no local GLUE data (conftest.SHARED_DATA)"
)
def test_reproduce_runs_a_table_end_to_end_then_reuses_it(tmp_path):
    """fang_table2_cpu debug=tiny, one seed: 3 real runs (one of them a resume that fails), the
    comparison printed and written; the same command again reuses every finished run."""
    out = tmp_path / "out"
    paper, _ = paper_of(FANG, "debug=tiny", f"data_dir={SHARED_DATA}")
    user = ["debug=tiny", f"data_dir={SHARED_DATA}", f"cache_dir={tmp_path / 'cache'}"]
    plan = make_plan(FANG, paper, out, user, n_seeds=1)
    broken = plan.where["Union sampling", "sst2", 1]  # a run.json without its config.yaml
    (out / broken.name).mkdir(parents=True)
    (out / broken.name / "run.json").write_text(json.dumps({"overrides": broken.overrides,
                                                            "config_sha256": "0"}))  # fmt: skip
    exe = Path(sys.executable).with_name("mtlrun-reproduce")
    env = {**os.environ, "COLUMNS": "200"}
    cmd = [str(exe), FANG, "--seeds", "1", "--out", str(out), *user]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    for word in ("ours", "paper", "gap", "Uniform sampling", "Active sampling", "69.96"):
        assert word in text, word
    assert "1 failed or blocked run(s)" in text and "config.yaml is missing" in text
    rows = list(csv.DictReader((out / "reproduce.csv").open()))
    done = [r for r in rows if r["ours_pct"]]
    assert {r["method"] for r in done} == {"Uniform sampling", "Active sampling (ours, γ = 0.5)"}
    for r in done:
        assert float(r["gap_pct"]) == pytest.approx(float(r["ours_pct"]) - float(r["paper_pct"]))
    finished = {c.name for c in plan.cells if (out / c.name / "results.json").is_file()}
    assert len(finished) == 2
    logs = {p.name: p.stat().st_mtime_ns for p in (out / "logs").iterdir()}

    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "3 run(s)" in again.stdout and "2 finished already" in again.stdout
    # only the broken one was tried again (its log rewritten); the finished ones were not
    relaunched = {
        p.name for p in (out / "logs").iterdir() if p.stat().st_mtime_ns != logs.get(p.name)
    }
    assert relaunched == {f"{broken.name}.log"}


def test_the_transfer_table_holds_out_each_row_and_averages_the_rows_run(tmp_path):
    """QLS Table 3: each row is its own run with transfer.task=<row>; its number is the run's
    cross-validated transfer score; the cpu form runs 4 rows and averages those per seed."""
    name = "qls_table3_cpu"
    paper, _ = paper_of(name)
    assert paper.blocks[0].split == "transfer" and paper.comparable
    assert paper.only_rows == ["books", "electronics", "dvd", "kitchen_housewares"]
    plan = make_plan(name, paper, tmp_path, [], n_seeds=2)
    runs = [c for c in plan.cells if c.phase == "run"]
    assert len(runs) == 8 * 4 * 2  # methods x rows x seeds: no run for the average row
    dtp = plan.where["DTP", "dvd", 2]
    assert "transfer.task=dvd" in dtp.overrides and "scheduler=dtp" in dtp.overrides
    assert not any(("DTP", "average", s) in plan.where for s in (1, 2))
    assert not any(("DTP", "music", s) in plan.where for s in (1, 2))  # outside sweep.rows
    for (_, row, seed), cell in plan.where.items():
        score = {"books": 0.70, "electronics": 0.72, "dvd": 0.74, "kitchen_housewares": 0.76}[row]
        held = {"task": row, "metric": "accuracy", "score": score + seed / 100}
        result = {"tasks": {"apparel": {"metric": "accuracy", "dev": 0.9, "test": 0.9}},
                  "aggregate": {"dev": 0.9, "test": 0.9}, "transfer": held}  # fmt: skip
        fake_run(tmp_path / cell.name, cell.overrides, result)
    by = {(r.method, r.row): r for r in reproduce.compare(plan)}
    books = by["DTP", "books"]
    assert books.ours == pytest.approx(71.5) and books.paper == pytest.approx(86.5)
    average = by["DTP", "average"]  # per seed: mean of 71, 73, 75, 77 = 74, and 75 for seed 2
    assert average.ours == pytest.approx(74.5) and average.sd == pytest.approx(0.70710678)
    assert average.note == "ours: mean over 4 of the paper's 16 rows"
    assert ("DTP", "music") not in by
    assert by["Hand Craft", "books"].note.startswith("not run")
    assert reproduce.score({"tasks": {}, "transfer": {"task": "dvd", "score": 0.5}}, "books",
                           "transfer", "accuracy") is None  # fmt: skip


def test_sweep_rows_must_be_rows_of_the_table():
    paper, cfg = paper_of("qls_table3_cpu")
    from omegaconf import OmegaConf

    block = OmegaConf.to_container(OmegaConf.create(cfg.paper))
    block["sweep"]["rows"] = ["books", "narnia"]
    with pytest.raises(ReproduceError, match=r"paper.sweep.rows: \['narnia'\]"):
        parse_paper(block, scheduler_ids())
