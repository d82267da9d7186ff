"""Gradient-norm clipping for MONAI's SupervisedTrainer, which has no option for it."""

from __future__ import annotations

import torch
from ignite.engine import Engine
from monai.engines.utils import IterationEvents

__all__ = ["GradientClipping"]


class GradientClipping:
    """
    Clip the global gradient norm of the trainer's network to ``max_norm`` between the backward pass and the
    optimizer step (MONAI's ``IterationEvents.BACKWARD_COMPLETED``). Gradients are unscaled first when AMP uses a
    grad scaler. Occasional gradient spikes of the mLSTM gates otherwise undo what a token model has learned.

    Args:
        max_norm: largest allowed global L2 norm. Defaults to 1.0.
    """

    def __init__(self, max_norm: float = 1.0) -> None:
        if max_norm <= 0:
            raise ValueError(f"max_norm should be positive, got {max_norm}.")
        self.max_norm = max_norm

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        scaler = getattr(engine, "scaler", None)
        if getattr(engine, "amp", False) and scaler is not None:
            scaler.unscale_(engine.optimizer)
        torch.nn.utils.clip_grad_norm_(engine.network.parameters(), self.max_norm)
