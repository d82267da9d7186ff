"""A loss that turns NaN on chosen calls, to drive the non-finite loss guard from a bundle config."""

from __future__ import annotations

import torch


class NaNLoss(torch.nn.Module):
    """``loss`` as is, except NaN on the calls listed in ``nan_calls`` (1-based) or on every call from ``nan_from``."""

    def __init__(self, loss: torch.nn.Module, nan_calls: tuple[int, ...] = (), nan_from: int | None = None) -> None:
        super().__init__()
        self.loss, self.nan_calls, self.nan_from, self.calls = loss, set(nan_calls), nan_from, 0

    def forward(self, *args, **kwargs) -> torch.Tensor:
        self.calls += 1
        value = self.loss(*args, **kwargs)
        if self.calls in self.nan_calls or (self.nan_from is not None and self.calls >= self.nan_from):
            return value * float("nan")
        return value
