"""
Checkpoints that survive a process being killed at any moment, and the state a resumed run needs.

They are ignite ``Checkpoint`` handlers writing through ``DiskSaver(atomic=True)``: every write goes to a temporary
file in the same folder that is then renamed over the target (``os.replace`` is atomic). MONAI's
``CheckpointSaver`` writes in place (``atomic=False``), and a ``Checkpoint`` that keeps one file of a fixed name
deletes it before writing the new one, so a run killed at the wrong moment would be left with a truncated file or
none: :class:`AtomicDiskSaver` is ignite's saver minus that deletion.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver

__all__ = ["AtomicDiskSaver", "CheckpointSaver", "TrainingProgress", "resume_checkpoint"]


class AtomicDiskSaver(DiskSaver):
    """ignite's atomic ``DiskSaver`` that never deletes the file it is about to replace (a fixed file name)."""

    def __init__(self, dirname: str, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, atomic=True, require_empty=False)
        self.filename = filename

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        super().__call__(checkpoint, self.filename or filename, metadata)

    def remove(self, filename: str) -> None:
        if self.filename is None:  # a fixed name is replaced by the next atomic write, never deleted first
            super().remove(filename)


class CheckpointSaver:
    """
    The bundles' checkpoints, each under one fixed file name, written atomically by ignite's ``Checkpoint``:

    * with ``save_key_metric``: ``save_dict`` whenever the engine's key metric reaches a new best (higher is
      better), as ``key_metric_filename`` (attach it to the validator);
    * with ``save_interval`` N > 0: ``save_dict`` every N epochs as ``last_filename``, the full state a resumed run
      reads (attach it to the trainer);
    * with ``save_interval_steps`` M > 0: the same file every M iterations as well, so a run killed in the middle
      of a long epoch resumes at its last M-th step (the trainer's state holds the iteration; a sampler that draws
      the same batches for an epoch, such as ``xlstm_monai.data.ResumableWeightedSampler``, skips those done).

    Args:
        save_dir: folder of the checkpoints.
        save_dict: objects to save (``state_dict``/``load_state_dict``), by name.
        save_key_metric: keep the best model by the key metric. Defaults to False.
        key_metric_filename: its file name. Defaults to "model.pt".
        save_interval: epochs between periodic checkpoints, 0 for none. Defaults to 0.
        last_filename: the periodic checkpoint's file name. Defaults to "last.pt".
        save_interval_steps: iterations between periodic checkpoints as well, 0 for none. Defaults to 0.
    """

    def __init__(
        self,
        save_dir: str,
        save_dict: dict,
        save_key_metric: bool = False,
        key_metric_filename: str = "model.pt",
        save_interval: int = 0,
        last_filename: str = "last.pt",
        save_interval_steps: int = 0,
    ) -> None:
        os.makedirs(save_dir, exist_ok=True)
        self.best = None
        if save_key_metric:
            self.best = Checkpoint(
                save_dict,
                AtomicDiskSaver(save_dir, key_metric_filename),
                score_function=lambda engine: engine.state.metrics[engine.state.key_metric_name],
                n_saved=1,
            )
        self.last = (
            Checkpoint(save_dict, AtomicDiskSaver(save_dir, last_filename), n_saved=1) if save_interval else None
        )
        self.save_interval = save_interval
        # a Checkpoint of its own: one Checkpoint keeps a file only when its step count (epoch or iteration) grows
        self.steps = (
            Checkpoint(save_dict, AtomicDiskSaver(save_dir, last_filename), n_saved=1) if save_interval_steps else None
        )
        self.save_interval_steps = save_interval_steps

    def attach(self, engine: Engine) -> None:
        if self.best is not None:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.best)
        if self.last is not None:
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self.last)
        if self.steps is not None:
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.save_interval_steps), self.steps)

    def key_metric_state(self) -> dict:
        """Which best checkpoint exists and its score, so a resumed run does not overwrite it with a worse one."""
        return self.best.state_dict() if self.best is not None else {}

    def load_state_dict(self, state_dict: Mapping) -> None:
        if self.best is not None:
            self.best.load_state_dict(state_dict)


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
