"""JSON that every parser reads: NaN and infinities (an undefined ROC-AUC, the loss of a task
without dev data) are written as null, never as the bare `NaN` Python's json module emits."""

from __future__ import annotations

import json
import math
from typing import Any


def finite_or_none(value: Any) -> Any:
    """`value` with every non-finite float inside it replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    return json.dumps(finite_or_none(value), allow_nan=False, **kwargs)
