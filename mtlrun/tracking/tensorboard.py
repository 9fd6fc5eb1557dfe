"""logger=tensorboard: event files in <run dir>/tensorboard, so `tensorboard --logdir` over a
run or a whole sweep shows every run's curves, and the HParams tab lines a sweep's runs up by
their settings and final scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mtlrun.errors import ConfigError
from mtlrun.tracking.base import Tracker

SUBDIR = "tensorboard"
SCORES = ("dev/score/average", "test/score/average")  # the HParams tab's metric columns
ALWAYS = ("scheduler.name", "tasks.name", "model.name", "seed")  # its setting columns


class TensorBoardTracker(Tracker):
    name = "tensorboard"

    @dataclass
    class Config:  # nothing to set: the files always go to <run dir>/tensorboard
        pass

    def __init__(self, cfg: Any, run_dir, overrides: list[str], params: dict[str, Any]) -> None:
        super().__init__(cfg, run_dir, overrides, params)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("logger=tensorboard needs the tensorboard package: "
                              "pip install 'mtlrun[tracking]'") from None  # fmt: skip
        self._writer_class, self.writer = SummaryWriter, None

    def start(self, resume_step: int | None) -> None:
        # purge_step: TensorBoard drops what the interrupted run logged after its checkpoint
        purge = None if resume_step is None else resume_step + 1
        self.writer = self._writer_class(self.run_dir / SUBDIR, purge_step=purge)
        if resume_step is None:
            self._hparams()
            self.writer.add_text("run", f"`{self.run_name}`", 0)

    def where(self) -> str:
        return f"tensorboard --logdir {self.run_dir / SUBDIR}"

    def _hparams(self) -> None:
        """The HParams tab's row for this run: the settings its command line chose."""
        from torch.utils.tensorboard.summary import hparams

        chosen = [o.split("=", 1)[0].lstrip("+~") for o in self.overrides if "=" in o]
        keys = {*ALWAYS, *chosen}
        keys = {k if k in self.params else f"{k}.name" for k in keys}
        values = {k: self.params[k] for k in sorted(keys) if k in self.params}
        for summary in hparams(values, dict.fromkeys(SCORES, 0.0)):
            self.writer._get_file_writer().add_summary(summary)

    def log(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()  # a killed run keeps what it logged

    def close(self, status: str) -> None:
        if self.writer is not None:
            self.writer.close()
