"""Where data comes from: local files under `data_dir`, or (`data_dir=null`) the Hugging Face hub.

Given a data_dir, the hub is never contacted. An unreachable hub makes `datasets` retry for
20+ s before failing; we check first and fail at once with a message that says how to use
local files instead."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from mtlrun.errors import DataError
from mtlrun.tasks.text_files import expand_user

_TRUE = ("1", "true", "yes", "on")


def local_dir(data_dir: str | None, path: str) -> Path | None:
    """`data_dir/path` (an absolute `path` as it is), or None: no local data, use the hub."""
    p = expand_user(path)
    if p.is_absolute():
        return p
    return None if data_dir is None else expand_user(data_dir) / p


def hub_reachable(timeout: float = 3.0) -> bool:
    if any(
        os.environ.get(v, "").lower() in _TRUE for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    ):
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # behind a proxy a direct connection says nothing; let `datasets` try
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_hub_split(hub_id: str, config: str | None, split: str, *, what: str, local: str,
                   revision: str | None = None):  # fmt: skip
    """`datasets.load_dataset(hub_id, config, split=split)`, or one clear DataError.

    `what` names the data ("GLUE RTE train"); `local` says which files under data_dir would
    replace the hub (shown when the hub cannot be reached)."""
    name = hub_id + (f" ({config})" if config else "")
    if not hub_reachable():
        raise DataError(
            f"{what}: data_dir is not set, so it would come from the Hugging Face hub ({name}), "
            f"which cannot be reached from here; download it elsewhere and set "
            f"data_dir=<directory holding {local}>"
        )
    import datasets  # heavy: only imported when the hub is used

    try:
        return datasets.load_dataset(hub_id, config, split=split, revision=revision)
    except Exception as e:  # noqa: BLE001  (network, auth, unknown split: all the user's to fix)
        raise DataError(
            f"{what}: loading {name} split {split!r} from the hub failed: {e}"
        ) from None
