"""
Checkpoints that survive a process being killed at any moment, and the state a resumed run needs.

MONAI's ``CheckpointSaver`` writes in place (``atomic=False``) and deletes the previous file of a fixed name before
writing the new one, so a run killed at the wrong moment leaves a truncated file or none. Here every write goes
to a temporary file in the same folder that is then renamed over the target (``os.replace`` is atomic), and a
fixed-name file is only ever replaced, never removed first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import monai.handlers
from ignite.engine import Engine
from ignite.handlers import DiskSaver

__all__ = ["AtomicDiskSaver", "CheckpointSaver", "TrainingProgress", "resume_checkpoint"]


class AtomicDiskSaver(DiskSaver):
    """ignite ``DiskSaver`` writing atomically, optionally always to one fixed file name."""

    def __init__(self, dirname: str, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, atomic=True, require_empty=False)
        self.filename = filename

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        super().__call__(checkpoint, self.filename or filename, metadata)

    def remove(self, filename: str) -> None:
        if self.filename is None:  # a fixed name is replaced by the next atomic write, never deleted first
            super().remove(filename)


class CheckpointSaver(monai.handlers.CheckpointSaver):
    """
    ``monai.handlers.CheckpointSaver`` with atomic writes and a fixed file name for the periodic ("last")
    checkpoint, so a resumed run finds it without globbing epoch numbers.

    Args:
        last_filename: fixed file name of the periodic checkpoint (with ``save_interval > 0``); it keeps only
            the latest one. Defaults to None (MONAI's ``checkpoint_epoch=N.pt`` names, ``n_saved`` of them).
        other args: as ``monai.handlers.CheckpointSaver``.
    """

    def __init__(self, save_dir: str, save_dict: dict, last_filename: str | None = None, **kwargs: Any) -> None:
        if last_filename is not None:
            kwargs["n_saved"] = 1
        super().__init__(save_dir, save_dict, **kwargs)
        os.makedirs(save_dir, exist_ok=True)
        names = (
            (self._final_checkpoint, kwargs.get("final_filename")),
            (self._key_metric_checkpoint, kwargs.get("key_metric_filename")),
            (self._interval_checkpoint, last_filename),
        )
        for checkpoint, filename in names:
            if checkpoint is not None:
                checkpoint.save_handler = AtomicDiskSaver(save_dir, filename)

    def key_metric_state(self) -> dict:
        """Which best checkpoint exists and its score, so a resumed run does not overwrite it with a worse one."""
        return self._key_metric_checkpoint.state_dict() if self._key_metric_checkpoint is not None else {}


class TrainingProgress:
    """
    What a resumed run needs beyond the network, optimizer, scheduler and trainer: the validator's best metric
    and epoch, and the best-checkpoint bookkeeping of the key-metric saver. Put it in the periodic checkpoint's
    ``save_dict`` and in the resume loader's ``load_dict``.

    Args:
        evaluator: the validation engine whose ``state.best_metric`` is kept.
        best_saver: the :class:`CheckpointSaver` that keeps the best model, or None.
    """

    def __init__(self, evaluator: Engine, best_saver: CheckpointSaver | None = None) -> None:
        self.evaluator = evaluator
        self.best_saver = best_saver

    def state_dict(self) -> dict:
        state = self.evaluator.state
        return {
            "best_metric": float(getattr(state, "best_metric", -1)),
            "best_metric_epoch": int(getattr(state, "best_metric_epoch", -1)),
            "best_checkpoint": self.best_saver.key_metric_state() if self.best_saver is not None else {},
        }

    def load_state_dict(self, state_dict: Mapping) -> None:
        self.evaluator.state.best_metric = state_dict["best_metric"]
        self.evaluator.state.best_metric_epoch = state_dict["best_metric_epoch"]
        if self.best_saver is not None and state_dict.get("best_checkpoint"):
            self.best_saver.load_state_dict(state_dict["best_checkpoint"])


def resume_checkpoint(ckpt_dir: str, filename: str = "last.pt", resume: bool = True) -> str | None:
    """Path of the last checkpoint to resume from, or None when resuming is off or there is none yet."""
    path = os.path.join(ckpt_dir, filename)
    return path if resume and os.path.isfile(path) else None
