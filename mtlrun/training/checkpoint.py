"""Checkpoints, written atomically and read without running code. `last.pt` holds everything a
resumed run needs (model, optimizer, scheduler, data streams, RNG states, best-so-far); `best.pt`
holds the best model; QLS policies and learning-phase checkpoints use the same files.

A file is a torch zip holding `{"format": ..., "version": ..., **state}`, read with
`torch.load(weights_only=True)`: a shared checkpoint or policy can then never execute code.
The weights-only loader rebuilds tensors and plain containers only, so `save` encodes what it
cannot (numpy arrays and scalars, deques, frozensets, huge ints) as tagged dicts that `load`
decodes: no numpy global is ever allowlisted."""

from __future__ import annotations

import pickle
import re
import zipfile
from collections import Counter, OrderedDict, deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtlrun.atomic import write_atomic
from mtlrun.errors import MtlrunError

CHECKPOINT = "mtlrun-checkpoint"
VERSION = 1  # of the file layout and the codec; a newer file is refused, not misread
# how messages name each format; the QLS policy's id is POLICY_FORMAT in schedulers/qls.py
_NAMES = {CHECKPOINT: "an mtlrun checkpoint", "mtlrun.qls_policy/1": "a QLS policy file"}

_TAG = "__mtlrun__"  # marks an encoded value; a real dict with this key is encoded too
_ZIP_MAGIC = b"PK\x03\x04"  # what torch.save writes; anything else is never unpickled
# types the weights-only unpickler rebuilds as they are
_ATOMS = (str, int, float, bool, type(None), complex, bytes, bytearray, torch.Size,
          torch.device, torch.dtype)  # fmt: skip
_MAX_INT_BITS = 2000  # pickle stores longer ints with LONG4, which the safe loader refuses


def save(path: Path, state: dict[str, Any], format: str = CHECKPOINT) -> None:
    """Write `state` (a dict of tensors, numpy values and plain containers) to `path`."""
    reserved = {"format", "version", _TAG} & set(state)
    if reserved or not all(type(k) is str for k in state):  # its keys are the file's keys
        raise ValueError(f"checkpoint state keys must be str, not format, version or {_TAG}")
    payload = {"format": format, "version": VERSION, **encode(state)}
    write_atomic(path, lambda f: torch.save(payload, f), mode="wb")


def load(path: Path, format: str = CHECKPOINT) -> dict[str, Any]:
    """The state `save(path, state, format)` wrote; MtlrunError (one line, naming the path) for
    a missing, damaged, foreign, unsafe or too new file."""
    path, what = Path(path), _NAMES.get(format, f"a {format} file")
    if not path.is_file():
        if format == CHECKPOINT:
            raise MtlrunError(
                f"no checkpoint {path}: was the run started with trainer.checkpoints=true?"
            )
        raise MtlrunError(f"{path}: no such file")
    try:
        with path.open("rb") as f:
            head = f.read(len(_ZIP_MAGIC))
        if head == _ZIP_MAGIC:
            with zipfile.ZipFile(path) as z:  # reads the directory at the end: a cut-off file
                z.namelist()  # fails here, not deep in torch's reader
    except OSError as e:
        raise MtlrunError(f"cannot read {path}: {e.strerror or e}") from None
    except zipfile.BadZipFile:
        head = None
    if head != _ZIP_MAGIC:
        reason = {b"": "empty file", None: "incomplete zip archive"}.get(head, "not a torch file")
        raise MtlrunError(f"{path}: not {what} (truncated or damaged: {reason})")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = re.search(r"GLOBAL ([\w.]+)", str(e))
        if unsafe:
            raise MtlrunError(
                f"{path}: not {what} (it would import {unsafe.group(1)}, which is never loaded "
                "for safety: another program or an older mtlrun wrote it)"
            ) from None
        raise MtlrunError(f"{path}: not {what} (truncated or damaged: {_short(e)})") from None
    except Exception as e:  # torch's zip reader raises RuntimeError, OSError, EOFError, ...
        raise MtlrunError(f"{path}: not {what} (truncated or damaged: {_short(e)})") from None
    found = raw.get("format") if isinstance(raw, dict) else None
    if not isinstance(found, str) or found != format:
        other = _NAMES.get(found) if isinstance(found, str) else None
        reason = (f"it is {other}" if other else "a torch file without mtlrun's format marker: "
                  "another program or an older mtlrun wrote it")  # fmt: skip
        raise MtlrunError(f"{path}: not {what} ({reason})")
    version = raw.get("version")
    if type(version) is not int or version < 1:
        raise MtlrunError(f"{path}: not {what} (truncated or damaged: bad version {version!r})")
    if version > VERSION:
        raise MtlrunError(
            f"{path}: {what} of version {version}, newer than this mtlrun reads ({VERSION}); "
            "upgrade mtlrun"
        )
    try:
        return {k: decode(v) for k, v in raw.items() if k not in ("format", "version")}
    except Exception as e:  # a damaged or crafted encoding
        raise MtlrunError(f"{path}: not {what} (truncated or damaged: {_short(e)})") from None


def _short(e: BaseException) -> str:
    """The informative line of an exception: torch's mention how to load unsafely, never that."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    keep = [x for x in lines if not x.startswith(("Weights only load failed", "Check the doc",
                                                  "(1)", "(2)"))]  # fmt: skip
    text = (keep or lines or [type(e).__name__])[-1].removeprefix("WeightsUnpickler error: ")
    text = text.split(". ")[0].rstrip(".")
    return text if len(text) <= 120 else text[:117] + "..."


# --- the codec ----------------------------------------------------------------------------------
def encode(x: Any) -> Any:
    """`x` in types `torch.load(weights_only=True)` rebuilds; `decode` inverts it exactly."""
    if isinstance(x, np.ndarray | np.generic):
        return _encode_array(x)
    if type(x) is int and x.bit_length() > _MAX_INT_BITS:
        return {_TAG: "int", "value": str(x)}
    if type(x) in _ATOMS or type(x) in (torch.Tensor, torch.nn.Parameter):
        return x
    if type(x) in (list, tuple):
        return type(x)(encode(v) for v in x)
    if type(x) is set:
        return {encode(v) for v in x} if all(type(v) in _ATOMS for v in x) else _seq("set", x)
    if type(x) is frozenset:
        return _seq("frozenset", x)
    if type(x) is deque:
        return {**_seq("deque", x), "maxlen": x.maxlen}
    if type(x) in (dict, OrderedDict, Counter):
        items = [(encode(k), encode(v)) for k, v in x.items()]
        plain = _TAG not in x and all(type(k) in _ATOMS for k, _ in items)
        if plain and type(x) is dict:
            return dict(items)
        if plain and type(x) is OrderedDict:  # keeps a state_dict's `_metadata`
            out = OrderedDict(items)
            out.__dict__.update(encode(vars(x)))
            return out
        attrs = getattr(x, "__dict__", None)
        return {_TAG: "dict", "type": type(x).__name__, "items": [list(kv) for kv in items],
                **({"attrs": encode(attrs)} if attrs else {})}  # fmt: skip
    raise TypeError(f"checkpoint: cannot store a {type(x).__module__}.{type(x).__qualname__}")


def _seq(tag: str, items: Any) -> dict[str, Any]:
    return {_TAG: tag, "items": [encode(v) for v in items]}


def _encode_array(x: np.ndarray | np.generic) -> dict[str, Any]:
    """An array as its raw bytes (a uint8 tensor) with its dtype and shape: exact for every
    fixed-size dtype (RNG keys in uint32/uint64, bool, float16, structured, strings)."""
    a = np.asarray(x)
    out: dict[str, Any] = {_TAG: "ndarray", "shape": list(a.shape)}
    if isinstance(x, np.generic):
        out["scalar"] = True
    if a.dtype.hasobject:
        if a.dtype != object:
            raise TypeError(f"checkpoint: cannot store a structured array of dtype {a.dtype}")
        return {**out, "dtype": "object", "items": [encode(v) for v in a.ravel().tolist()]}
    raw = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    if not raw.flags.writeable:  # torch.from_numpy wants a writable array
        raw = raw.copy()
    return {**out, "dtype": np.lib.format.dtype_to_descr(a.dtype), "data": torch.from_numpy(raw)}


def decode(x: Any) -> Any:
    """The inverse of `encode`, applied to what `torch.load(weights_only=True)` returned."""
    if type(x) in (list, tuple):
        return type(x)(decode(v) for v in x)
    if type(x) is set:
        return {decode(v) for v in x}
    if type(x) is OrderedDict:
        out = OrderedDict((k, decode(v)) for k, v in x.items())
        out.__dict__.update(decode(vars(x)))
        return out
    if type(x) is not dict:
        return x
    tag = x.get(_TAG)
    if tag is None:
        return {k: decode(v) for k, v in x.items()}
    if tag == "ndarray":
        return _decode_array(x)
    if tag == "int":
        return int(x["value"])
    if tag == "deque":
        return deque((decode(v) for v in x["items"]), maxlen=x["maxlen"])
    if tag in ("set", "frozenset"):
        return (set if tag == "set" else frozenset)(decode(v) for v in x["items"])
    if tag == "dict":
        kinds = {"dict": dict, "OrderedDict": OrderedDict, "Counter": Counter}
        out = kinds[x["type"]]()
        for k, v in x["items"]:
            out[decode(k)] = decode(v)
        if "attrs" in x:
            out.__dict__.update(decode(x["attrs"]))
        return out
    raise ValueError(f"unknown encoded value {tag!r}")


def _decode_array(x: dict[str, Any]) -> np.ndarray | np.generic:
    shape = tuple(x["shape"])
    if x["dtype"] == "object":
        a = np.empty(len(x["items"]), dtype=object)
        for i, v in enumerate(x["items"]):
            a[i] = decode(v)
        a = a.reshape(shape)
    else:
        dtype = np.lib.format.descr_to_dtype(x["dtype"])
        data = x["data"]
        if not isinstance(data, torch.Tensor) or data.dtype != torch.uint8:
            raise ValueError("array data is not a byte tensor")
        raw = data.numpy()
        if raw.size != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"array data of {raw.size} bytes for shape {list(shape)} {dtype}")
        # a copy: aligned, writable and independent of the loaded tensor
        a = raw.view(dtype).reshape(shape).copy() if raw.size else np.zeros(shape, dtype)
    return a[()] if x.get("scalar") else a


def rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
