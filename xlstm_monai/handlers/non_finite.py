"""Skipping optimizer steps whose loss is not finite, and stopping a run that keeps diverging."""

from __future__ import annotations

import logging
import math
import os

import torch
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents

from xlstm_monai.distributed import any_rank, is_distributed

from .checkpoint import AtomicDiskSaver

__all__ = ["NonFiniteLossGuard", "TrainingDivergedError"]


class TrainingDivergedError(RuntimeError):
    """The loss stayed NaN or infinite for too many steps in a row."""


class NonFiniteLossGuard:
    """
    After the backward pass of a step whose loss is NaN or infinite, drop the gradients so the optimizer leaves
    the weights alone, and count the step. After ``max_consecutive`` such steps in a row, save the network as it
    was before the divergence (the skipped steps never changed it) to ``save_dir/filename`` and stop the run with
    :class:`TrainingDivergedError`. Attach it before gradient clipping. The counts are logged every epoch and
    kept in ``engine.state.metrics`` ("skipped_steps"). In a distributed run the decision is all-reduced: a
    non-finite loss on any rank skips the step on every rank, and every rank stops on the same step; rank 0 saves.

    Args:
        save_dir: folder of the pre-divergence checkpoint (the bundle's ckpt_dir).
        max_consecutive: non-finite steps in a row before stopping. Defaults to 5.
        filename: name of the pre-divergence checkpoint. Defaults to "before_divergence.pt".
    """

    def __init__(self, save_dir: str, max_consecutive: int = 5, filename: str = "before_divergence.pt") -> None:
        if max_consecutive < 1:
            raise ValueError(f"max_consecutive should be >= 1, got {max_consecutive}.")
        self.save_dir = save_dir
        self.max_consecutive = max_consecutive
        self.filename = filename
        self.consecutive = 0
        self.skipped = 0
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        self.logger = engine.logger
        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    def __call__(self, engine: Engine) -> None:
        loss = engine.state.output["loss"] if isinstance(engine.state.output, dict) else engine.state.output
        finite = math.isfinite(float(torch.as_tensor(loss).detach().float().mean()))
        # DDP has already averaged the gradients of every rank: one rank's NaN is every rank's, so all decide alike
        if not any_rank(not finite):
            self.consecutive = 0
            return
        engine.optimizer.zero_grad(set_to_none=True)  # the step that follows changes nothing
        self.consecutive += 1
        self.skipped += 1
        self.logger.warning(
            f"non-finite loss at epoch {engine.state.epoch}, iteration {engine.state.iteration}"
            f"{'' if not finite or not is_distributed() else ' on another rank'}: step skipped "
            f"({self.consecutive} in a row, {self.skipped} in all)"
        )
        if self.consecutive >= self.max_consecutive:
            path = os.path.join(self.save_dir, self.filename)
            if not is_distributed() or torch.distributed.get_rank() == 0:
                AtomicDiskSaver(self.save_dir, self.filename)(
                    {"model": _unwrap(engine.network).state_dict()}, self.filename
                )
            message = (
                f"training stopped: {self.consecutive} non-finite losses in a row (epoch {engine.state.epoch}, "
                f"iteration {engine.state.iteration}); the network before the divergence is saved to {path}. "
                "Lower the learning rate, or run the mLSTM kernel in float32 (kernel_dtype: float32)."
            )
            self.logger.error(message)
            raise TrainingDivergedError(message)

    def _epoch_completed(self, engine: Engine) -> None:
        engine.state.metrics["skipped_steps"] = self.skipped
        if self.skipped:
            self.logger.warning(f"{self.skipped} optimizer steps skipped for non-finite losses so far")


def _unwrap(network: torch.nn.Module) -> torch.nn.Module:
    return getattr(network, "module", network)
