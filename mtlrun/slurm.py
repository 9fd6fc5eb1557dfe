"""SLURM submission (`mtlrun -m hydra/launcher=slurm ...`, conf/hydra/launcher/slurm.yaml).

The launcher config derives the job's resources from the `hardware` group; the one value that
needs a computation, the GPUs per node, comes from the `mtlrun.slurm_gpus` resolver below. It
must be registered before Hydra instantiates the launcher: mtlrun/cli.py calls
`register_resolvers()` at import, beside run_dir's resolvers. (A submitted job does not resolve
the launcher config again.)
"""

from __future__ import annotations

from omegaconf import OmegaConf


def slurm_gpus(device: str, devices: int) -> int:
    """GPUs per node for hardware.device and hardware.devices (processes per node): one per
    process on cuda (`cuda`, `cuda:N`), none on cpu."""
    return int(devices) if str(device).startswith("cuda") else 0


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("mtlrun.slurm_gpus"):
        OmegaConf.register_new_resolver("mtlrun.slurm_gpus", slurm_gpus)
