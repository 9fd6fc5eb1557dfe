"""The learning phase of schedulers that learn a policy before the run (QLS, §6.3.8): episodes
that each train a freshly initialised model for a fixed number of steps while the scheduler
explores and learns. Resumable at episode boundaries (`checkpoints/learn.pt`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from mtlrun.report.progress import ProgressDisplay
from mtlrun.schedulers import Scheduler
from mtlrun.training import checkpoint
from mtlrun.training.trainer import Trainer

log = logging.getLogger("mtlrun")


def resume_learning(scheduler: Scheduler, run_dir: Path) -> tuple[Path, int, dict[str, float]]:
    """The learning checkpoint's path, the episodes already done and their timing: restored
    from `checkpoints/learn.pt` (into the scheduler too) when a killed phase left one."""
    ckpt = run_dir / "checkpoints" / "learn.pt"
    first, timing = 0, {"learn_seconds": 0.0, "learn_signal_seconds": 0.0,
                        "learn_policy_seconds": 0.0}  # fmt: skip
    if ckpt.is_file():
        saved = checkpoint.load(ckpt)
        scheduler.load_state_dict(saved["scheduler"])
        first, timing = saved["episode"], saved["timing"]
        episodes = scheduler.learning_plan()[0]
        log.info("resuming the learning phase at episode %d of %d", first + 1, episodes)
    return ckpt, first, timing


def learn_policy(
    scheduler: Scheduler,
    make_episode: Callable[[int, ProgressDisplay], Trainer],
    run_dir: Path,
    progress: bool,
) -> dict[str, float]:
    """Run the scheduler's learning episodes; returns their wall-time split (seconds)."""
    episodes, steps = scheduler.learning_plan()
    ckpt, first, timing = resume_learning(scheduler, run_dir)
    log.info("%s: learning phase, %d episodes of %d steps", scheduler.name, episodes, steps)
    display = ProgressDisplay(episodes * steps, [], enabled=progress, label="learn")
    with display:
        display.start(first * steps)
        for episode in range(first, episodes):
            scheduler.begin_episode(episode)
            trainer = make_episode(episode, display)
            trainer.run_episode(steps)
            s = trainer.state
            timing["learn_seconds"] += s.train_seconds
            timing["learn_signal_seconds"] += s.signal_seconds
            timing["learn_policy_seconds"] += s.policy_seconds
            if not display.live:
                log.info("learning: %s", scheduler.learning_status())
            checkpoint.save(ckpt, {"episode": episode + 1, "timing": timing,
                                   "scheduler": scheduler.state_dict()})  # fmt: skip
    scheduler.end_learning(run_dir)
    ckpt.unlink()
    return {k: round(v, 3) for k, v in timing.items()}
