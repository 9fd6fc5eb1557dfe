"""Command-line overrides checked before Hydra sees them: a misspelt key or option is one line
with a suggestion, never Hydra's hint to append it with `+` (which would run the default
experiment and store the typo)."""

from __future__ import annotations

import difflib
from dataclasses import fields, is_dataclass
from pathlib import Path

from mtlrun.config import SCHEMAS, Config, TransferConfig
from mtlrun.errors import ConfigError
from mtlrun.paths import config_dir
from mtlrun.tracking import LoggerConfig

PRESET_GROUPS = ("experiment", "debug")  # option-only groups: no schema of their own
SWEEP_FUNCTIONS = ("choice(", "range(", "interval(", "glob(", "tag(", "sort(", "shuffle(")


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml"))


def top_level_keys() -> list[str]:
    return sorted({f.name for f in fields(Config)} | set(PRESET_GROUPS) | {"hydra"})


def default_options() -> dict[str, str]:
    """group -> its default option, as conf/config.yaml's defaults list names them."""
    import yaml

    listed = yaml.safe_load((Path(config_dir()) / "config.yaml").read_text())["defaults"]
    return {k: v for d in listed if isinstance(d, dict) for k, v in d.items() if v is not None}


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _chosen(group: str, args: list[str], default: str) -> str | None:
    """The option of `group` these arguments choose; None when an experiment may choose it."""
    for arg in args:
        key, _, value = arg.lstrip("+~").partition("=")
        if key == group and "," not in value:
            return value
    if any(a.lstrip("+").startswith("experiment=") for a in args):
        return None
    return default


def _schema(group: str, args: list[str]):
    from mtlrun.schedulers import SCHEDULERS

    if group == "transfer":
        return TransferConfig
    if group == "logger":
        return LoggerConfig
    if group in ("optimizer", "hardware", "trainer"):  # one schema whatever the option
        return SCHEMAS[group][group]
    defaults = default_options()
    if group not in defaults:
        return None
    option = _chosen(group, args, defaults[group])
    if group == "scheduler":
        return SCHEDULERS[option].Config if option in SCHEDULERS else None
    return SCHEMAS[group].get(option) if option else None


def check_overrides(args: list[str]) -> None:
    """Raise ConfigError for the first override whose key or group option does not exist."""
    keys = top_level_keys()
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue  # a flag (-m, --cfg job, ...) or a flag's value
        key, _, value = arg.lstrip("~+").partition("=")
        top = key.replace("/", ".").split(".")[0]
        if top not in keys:
            raise ConfigError(f"{arg}: no key {top!r}{_suggest(top, keys)}; the keys are "
                              f"{', '.join(keys)}")  # fmt: skip
        if top == "hydra":
            continue
        if key == top and (Path(config_dir()) / top).is_dir():  # a group option: scheduler=qls
            if any(value.startswith(f) for f in SWEEP_FUNCTIONS):
                continue
            options = group_options(top)
            for v in value.split(","):
                if v not in options and not (v == "null" and top in PRESET_GROUPS):
                    raise ConfigError(f"{top}={v}: no such option{_suggest(v, options)}; the "
                                      f"options are {', '.join(options)}")  # fmt: skip
            continue
        parts = key.split(".")
        if top == "logger" and len(parts) > 1:
            _check_logger_key(arg, parts, args)
        schema = _schema(top, args)
        if len(parts) > 1 and schema is not None and is_dataclass(schema):
            names = sorted(f.name for f in fields(schema))
            if parts[1] not in names:
                raise ConfigError(f"{arg}: {top} has no key {parts[1]!r}"
                                  f"{_suggest(parts[1], names)}; its keys are "
                                  f"{', '.join(names)}")  # fmt: skip


def _check_logger_key(arg: str, parts: list[str], args: list[str]) -> None:
    """logger.<tracker>.<key>: the tracker must be on (its options are null otherwise, which
    Hydra would answer with an assertion) and the key one of its settings."""
    from mtlrun.tracking import TRACKERS

    if parts[1] not in TRACKERS:
        return  # the first-level check names the trackers
    chosen = next((a.lstrip("+").partition("=")[2].split(",") for a in args
                   if a.lstrip("+").startswith("logger=")), [])  # fmt: skip
    if parts[1] not in chosen and "all" not in chosen:
        raise ConfigError(f"{arg}: the {parts[1]} logger is off; turn it on with "
                          f"logger={parts[1]} (or logger=all)")  # fmt: skip
    names = sorted(f.name for f in fields(TRACKERS[parts[1]].Config))
    if len(parts) > 2 and parts[2] not in names:
        raise ConfigError(f"{arg}: logger.{parts[1]} has no key {parts[2]!r}"
                          f"{_suggest(parts[2], names)}; its keys are "
                          f"{', '.join(names) or 'none'}")  # fmt: skip
