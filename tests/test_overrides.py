"""Misspelt keys and options on the command line are one line with a suggestion, never Hydra's
hint to append them with `+` (mtlrun/overrides.py)."""

import pytest
from conftest import mtlrun

from mtlrun.errors import ConfigError
from mtlrun.overrides import check_overrides


@pytest.mark.parametrize(
    "args, message",
    [
        (["sheduler=qls"], "sheduler=qls: no key 'sheduler' (did you mean scheduler?)"),
        (["+sheduler=qls"], "+sheduler=qls: no key 'sheduler' (did you mean scheduler?)"),
        (["++sede=3"], "no key 'sede' (did you mean seed?)"),
        (["scheduler=qsl"], "scheduler=qsl: no such option (did you mean qls?)"),
        (["-m", "scheduler=uniform,qsl"], "scheduler=qsl: no such option (did you mean qls?)"),
        (["trainer.max_step=5"], "trainer has no key 'max_step' (did you mean max_steps?)"),
        (["scheduler=qls", "scheduler.episods=2"], "no key 'episods' (did you mean episodes?)"),
        (["scheduler.T=2"], "scheduler has no key 'T'"),  # uniform, the default, has no T
        (["tasks=multidomain16", "tasks.domain=[books]"], "(did you mean domains?)"),
        (["transfer.tsk=books"], "transfer has no key 'tsk' (did you mean task?)"),
        (["experiment=qls_tabel2"], "(did you mean qls_table2?)"),
        (["totally_new=1"], "no key 'totally_new'; the keys are cache_dir, data_dir, debug"),
    ],
)
def test_misspellings_are_refused_with_a_suggestion(args, message):
    with pytest.raises(ConfigError) as e:
        check_overrides(args)
    assert message in str(e.value)


@pytest.mark.parametrize(
    "args",
    [
        ["+model.decoder.task_dropout.en_de=0.25", "tasks=multi30k"],  # a new key of a dict
        ["hydra/launcher=slurm", "hydra.run.dir=x", "hydra.sweep.subdir=${seed}"],
        ["-m", "scheduler=uniform,proportional", "seed=1,2"],
        ["-m", "scheduler=choice(uniform,dtp)"],
        ["experiment=qls_table2_cpu", "scheduler.T=2", "debug=tiny"],  # the preset chooses
        ["scheduler=temperature", "scheduler.T=2", "~data_dir"],
        ["experiment=null", "trainer.resume=outputs/x", "--cfg", "job"],
        ["tasks=glue_fang", "tasks.train_size.sst2=10", "transfer.task=rte"],
    ],
)
def test_what_exists_passes(args):
    check_overrides(args)


@pytest.mark.slow
def test_the_command_refuses_the_plus_trap_in_one_line(tmp_path):
    for args, hint in [(["sheduler=qls"], "did you mean scheduler?"),
                       (["+sheduler=qls"], "did you mean scheduler?"),
                       (["scheduler=qsl"], "did you mean qls?")]:  # fmt: skip
        proc = mtlrun([*args, f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, check=False)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stderr.startswith("mtlrun: error: ") and hint in proc.stderr
        assert "+" not in proc.stderr.split("(did")[1]  # no hint to append anything
    assert not (tmp_path / "run").exists() and not (tmp_path / "outputs").exists()


def test_help_lists_every_group_and_its_options_and_no_internal_schema(tmp_path):
    proc = mtlrun(["--help"], cwd=tmp_path)
    from mtlrun.cli_help import GROUPS
    from mtlrun.overrides import group_options

    text = " ".join(proc.stdout.split())  # options wrap over lines
    for group in GROUPS:
        assert f" {group} " in text
        for option in group_options(group):
            assert option in text, (group, option)
    assert "uniform*" in text and "schema" not in proc.stdout
    assert "trainer.resume=DIR" in proc.stdout and not (tmp_path / "outputs").exists()
