"""Who this process is in a data-parallel run, and the few collectives training needs.

Every rank holds the whole model, the same scheduler (identically seeded) and the same data
streams, so all ranks draw the same task and the same global batch at every step; rank r trains
on `shard(batch)`, the examples r, r + W, r + 2W, ... of it. What a scheduler observes is then
made global before it sees it:

- task losses and batch accuracies: each rank's sums and counts are summed across ranks in one
  small all-reduce per step (`reduce_sums`), so every rank gets the loss of the whole batch;
- gradients: averaged across ranks in one flat all-reduce per device (`average_grads`); with the
  loss carriers of `global_loss` this is exactly the gradient of the whole batch, also for
  schedulers whose combined loss is not linear in the task losses (Kendall, loss exponents);
- dev evaluations and dev-set signals: measured by rank 0 and broadcast (`on_main`).

With identical inputs every rank takes identical decisions; `check_same` verifies that at every
evaluation, so a rank that drifted stops the run instead of training something else. A
single-process run is `Runtime()`: every collective is a no-op and nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from mtlrun.errors import MtlrunError

T = TypeVar("T")


@dataclass
class Runtime:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    # --- data --------------------------------------------------------------------------------
    def shard(self, index: np.ndarray) -> np.ndarray:
        """This rank's examples of a global batch (strided: length-sorted batches stay
        balanced); empty when the batch has fewer examples than there are ranks."""
        return index[self.rank :: self.world_size] if self.distributed else index

    # --- collectives ---------------------------------------------------------------------------
    def reduce_sums(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of `values` over all ranks (a float64 vector)."""
        if not self.distributed:
            return values
        out = values.to(self._comm_device, torch.float64)
        dist.all_reduce(out)
        return out.to(values.device)

    def global_loss(self, local_sum: torch.Tensor, count: float, mean: torch.Tensor):
        """This rank's carrier of the whole batch's mean loss: its value is `mean` (over all
        ranks' `count` rows, from `reduce_sums`), its gradient W·∇(local_sum / count), whose
        average over the ranks is the gradient of the whole batch's mean loss."""
        carrier = local_sum * (self.world_size / count)
        return carrier - carrier.detach() + mean.to(carrier.device, carrier.dtype)

    def average_grads(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Average the gradients of `params` over all ranks, in place. A parameter that got no
        gradient on any rank keeps `grad=None` (its optimizer skips it, as in one process)."""
        if not self.distributed:
            return
        by_device: dict[torch.device, list[torch.nn.Parameter]] = {}
        for p in params:
            by_device.setdefault(p.device, []).append(p)
        for device, group in sorted(by_device.items(), key=lambda item: str(item[0])):
            flat = torch.cat(
                [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float()
                 for p in group]
                + [torch.tensor([float(p.grad is not None) for p in group], device=device)]
            )  # fmt: skip
            comm = flat.to(self._comm_device)
            dist.all_reduce(comm)
            flat = comm.to(device)
            had = flat[-len(group) :]
            offset = 0
            for p, got in zip(group, had.tolist(), strict=True):
                n = p.numel()
                if got:
                    avg = (flat[offset : offset + n] / self.world_size).view_as(p).to(p.dtype)
                    if p.grad is None:
                        p.grad = avg
                    else:
                        p.grad.copy_(avg)
                offset += n

    def average(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """The mean of each tensor over all ranks (GradNorm's per-task gradients on W)."""
        if not self.distributed:
            return tensors
        flat = torch.cat([t.reshape(-1).double() for t in tensors]).to(self._comm_device)
        dist.all_reduce(flat)
        flat /= self.world_size
        out, offset = [], 0
        for t in tensors:
            out.append(flat[offset : offset + t.numel()].view_as(t).to(t.device, t.dtype))
            offset += t.numel()
        return out

    def on_main(self, fn: Callable[[], T]) -> T:
        """`fn()` computed by rank 0 and handed to every rank. A user error on rank 0
        (MtlrunError) is raised on every rank, so none is left waiting."""
        if not self.distributed:
            return fn()
        box: list[Any] = [None]
        if self.is_main:
            try:
                box[0] = ("ok", fn())
            except MtlrunError as e:
                box[0] = ("error", e)
        dist.broadcast_object_list(box, src=0)
        status, value = box[0]
        if status == "error":
            raise value
        return value

    def gather(self, obj: T) -> list[T]:
        """Every rank's `obj`, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def check_same(self, values: list[float], what: str) -> None:
        """Stop the run if the ranks disagree on `values` (a rank has drifted)."""
        if not self.distributed:
            return
        seen = self.gather([float(v) for v in values])
        if any(s != seen[0] for s in seen[1:]):
            raise RuntimeError(f"data-parallel ranks disagree on {what}: {seen}")

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    @property
    def _comm_device(self) -> torch.device:
        """nccl communicates CUDA tensors, gloo CPU tensors."""
        if self.distributed and dist.get_backend() == "nccl":
            return self.device
        return torch.device("cpu")
