from dataclasses import asdict
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from mtlrun.config import register_configs, validate
from mtlrun.errors import ConfigError
from mtlrun.paths import config_dir
from mtlrun.schedulers import SCHEDULERS

register_configs()
CONF = Path(config_dir())


def composed(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_defaults():
    cfg = validate(composed())
    assert (cfg.model.name, cfg.tasks.name, cfg.scheduler.name) == ("lstm", "synthetic", "uniform")
    assert (cfg.optimizer.name, cfg.hardware.name) == ("adam", "cpu")


# experiment/ and debug/ presets set keys of several groups (# @package _global_):
# tests/test_experiments.py composes them
GROUP_OPTIONS = sorted(
    p for p in CONF.glob("*/*.yaml") if p.parent.name not in ("experiment", "debug")
)


@pytest.mark.parametrize("path", GROUP_OPTIONS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_option_composes_and_matches_its_schema_defaults(path):
    group, option = path.parent.name, path.stem
    required = {"single": {"task": "sent0"}, "fixed_schedule": {"path": "schedule.json"}}
    given = required.get(option, {})
    cfg = composed(f"{group}={option}", *(f"scheduler.{k}={v}" for k, v in given.items()))
    obj = getattr(validate(cfg), group)
    if group == "scheduler" and option in SCHEDULERS:
        # the YAML repeats the dataclass defaults for readers; they must not drift apart
        assert asdict(obj) == asdict(SCHEDULERS[option].Config(**given))


@pytest.mark.parametrize(
    "override", ["trainer.max_step=5", "scheduler.Tx=1", "trainer.max_steps=abc", "scheduler=nope"]
)
def test_unknown_keys_and_bad_types_fail_at_compose_time(override):
    with pytest.raises(ConfigCompositionException):
        composed(override)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["trainer.max_steps=-5"], "trainer.max_steps must be > 0"),
        (["trainer.batch_size=0"], "trainer.batch_size must be > 0"),
        (["trainer.eval_every=0"], "trainer.eval_every must be > 0"),
        (["scheduler=temperature", "scheduler.T=0"], "scheduler.T must be > 0"),
        (["scheduler=temperature", "scheduler.T=-2"], "scheduler.T must be > 0"),
        (["scheduler=single"], "scheduler.task has no value"),
        (["model.pooling=attention"], "model.pooling"),
        (["model.dropout=1.5"], "model.dropout"),
        (["optimizer.lr=0"], "optimizer.lr must be > 0"),
        (["tasks.label_noise=[0.1]"], "one entry per task"),
        (["tasks=multidomain16", "tasks.domains=[books,nope]"], "unknown"),
    ],
)
def test_bad_values_give_one_clear_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(composed(*overrides))


def test_uniform_sampling_is_the_spec_name_of_uniform():
    assert validate(composed("scheduler=uniform_sampling")).scheduler.name == "uniform"


def test_task_paths_are_under_data_dir_and_absolute_ones_stand():
    from mtlrun.tasks.sources import local_dir

    cfg = composed("tasks=multidomain16", "data_dir=/some/where")
    assert str(local_dir(cfg.data_dir, cfg.tasks.path)) == "/some/where/fdu_mtl_16domain"
    assert str(local_dir(None, "/abs/md16")) == "/abs/md16"
    assert local_dir(None, cfg.tasks.path) is None  # no data_dir: the hub
