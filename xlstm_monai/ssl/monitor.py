"""Per-epoch statistics of a student-teacher run, and a stop with a clear message when it has collapsed."""

from __future__ import annotations

import logging
from collections import defaultdict

import torch
from ignite.engine import Engine, Events

from xlstm_monai.distributed import all_reduce_mean

__all__ = ["CollapseMonitor", "TrainingCollapsedError"]

LOGGED = ("loss_global", "loss_local", "loss_recon", "teacher_entropy", "kl_to_uniform", "embedding_spread")


class TrainingCollapsedError(RuntimeError):
    """The teacher's outputs no longer carry information about the input."""


class CollapseMonitor:
    """
    Average the loss terms and collapse statistics of :class:`StudentTeacherTrainer` over each epoch, keep them in
    ``engine.state.metrics`` (so StatsHandler and TensorBoardStatsHandler log them), and stop training with
    :class:`TrainingCollapsedError` when, for ``patience`` epochs in a row, either

    * the teacher's outputs are uniform (normalised entropy above ``1 - uniform_tolerance``: the centring won), or
    * every volume gets the same class embedding (spread below ``min_spread``: the sharpening won).

    Both are the known failure modes of DINO-style training; neither recovers, so days of GPU time are saved.
    In a distributed run the epoch means are averaged over ranks first, so every rank stops on the same epoch.

    Args:
        patience: consecutive collapsed epochs before stopping. Defaults to 3.
        uniform_tolerance: how close to the maximum entropy counts as uniform. Defaults to 0.01.
        min_spread: class-embedding spread below which all embeddings count as equal. Defaults to 1e-3.
        name: logger name; defaults to the engine's logger.
    """

    def __init__(
        self, patience: int = 3, uniform_tolerance: float = 0.01, min_spread: float = 1e-3, name: str | None = None
    ) -> None:
        self.patience = patience
        self.uniform_tolerance = uniform_tolerance
        self.min_spread = min_spread
        self.logger = logging.getLogger(name) if name else None
        self.collapsed_epochs = 0
        self._sums: dict[str, float] = defaultdict(float)
        self._count = 0

    def attach(self, engine: Engine) -> None:
        if self.logger is None:
            self.logger = engine.logger
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._accumulate)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        self._sums, self._count = defaultdict(float), 0

    def _accumulate(self, engine: Engine) -> None:
        # running means kept in metrics at every iteration, so epoch-level loggers read them in any handler order
        output = engine.state.output
        for key in LOGGED:
            if key in output:
                self._sums[key] += float(torch.as_tensor(output[key]))
        self._count += 1
        engine.state.metrics.update({k: v / self._count for k, v in self._sums.items()})

    def __call__(self, engine: Engine) -> None:
        keys = sorted(self._sums)  # the same order on every rank
        local = [self._sums[k] / max(self._count, 1) for k in keys]
        means = dict(zip(keys, all_reduce_mean(local)))  # every rank decides on the same figures
        reasons = []
        if means.get("teacher_entropy", 0.0) > 1.0 - self.uniform_tolerance:
            reasons.append(
                f"teacher outputs are uniform (normalised entropy {means['teacher_entropy']:.4f}, KL to uniform "
                f"{means.get('kl_to_uniform', float('nan')):.2e}); lower the teacher temperature or the centre momentum"
            )
        if means.get("embedding_spread", 1.0) < self.min_spread:
            reasons.append(
                f"all volumes get the same class embedding (spread {means['embedding_spread']:.2e}); raise the "
                "teacher temperature, the EMA momentum or the batch size"
            )
        self.collapsed_epochs = self.collapsed_epochs + 1 if reasons else 0
        if self.collapsed_epochs >= self.patience:
            message = (
                f"self-supervised training collapsed at epoch {engine.state.epoch} "
                f"({self.collapsed_epochs} epochs in a row): " + "; ".join(reasons)
            )
            self.logger.error(message)
            raise TrainingCollapsedError(message)
