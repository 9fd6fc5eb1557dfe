"""hardware.precision: fp32, or mixed precision under autocast (bf16; fp16 with dynamic loss
scaling). Parameters, optimizer states and the task losses stay in fp32; autocast runs the
model's matrix products in the lower precision.

fp16's loss scaling is done here rather than by torch.amp.GradScaler because a scheduler may
use one optimizer per task over shared parameters (GradScaler unscales per optimizer, which
would divide a shared gradient more than once): the loss is multiplied by S before backward,
every gradient divided by S after it; an overflowed step (a non-finite gradient) is dropped and
S halved, and S doubles after GROWTH_INTERVAL good steps, as GradScaler does.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import torch

log = logging.getLogger(__name__)

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
INIT_SCALE = 2.0**16  # GradScaler's defaults
GROWTH_INTERVAL = 2000


class Precision:
    def __init__(self, name: str, device: torch.device) -> None:
        self.name = name
        self.dtype = DTYPES[name]
        self.device_type = device.type
        self.scaling = name == "fp16"
        self.scale = INIT_SCALE if self.scaling else 1.0
        self.overflows = 0  # fp16 steps dropped for a non-finite gradient (S was too large)
        self._good = 0

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scaled(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.scale if self.scaling else loss

    def unscale(self, params: list[torch.nn.Parameter]) -> None:
        if self.scaling:
            grads = [p.grad for p in params if p.grad is not None]
            if grads:
                torch._foreach_mul_(grads, 1.0 / self.scale)

    def overflowed(self) -> None:
        """fp16: the step's gradient overflowed; drop it and halve the scale."""
        self.overflows += 1
        self.scale /= 2
        self._good = 0
        log.debug("fp16 gradient overflow: loss scale now %g", self.scale)

    def stepped(self) -> None:
        if self.scaling:
            self._good += 1
            if self._good == GROWTH_INTERVAL:
                self.scale *= 2
                self._good = 0

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "good": self._good, "overflows": self.overflows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale, self._good = state["scale"], state["good"]
        self.overflows = state["overflows"]
