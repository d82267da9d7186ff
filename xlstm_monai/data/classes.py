"""Class balance of classification datalists."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import torch

__all__ = ["class_weights"]


def class_weights(cases: Sequence[Mapping], num_classes: int) -> torch.Tensor:
    """
    Inverse-frequency weights ``N / (K * count_k)`` for a cross-entropy loss, so an imbalanced training set
    (7 M / 3 F, or few AD) does not teach the majority class. A class absent from ``cases`` is an error: it
    could never be learned.
    """
    counts = Counter(int(c["label"]) for c in cases)
    missing = [k for k in range(num_classes) if counts[k] == 0]
    if missing:
        raise ValueError(f"classes {missing} have no training case (counts {dict(sorted(counts.items()))})")
    total = sum(counts.values())
    return torch.tensor([total / (num_classes * counts[k]) for k in range(num_classes)], dtype=torch.float32)
