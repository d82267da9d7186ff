"""
Test-time mirroring: the average of a network's logits over an image and its mirror images, each mapped back, as
nnU-Net predicts by default. Wraps any MONAI inferer, so a bundle config swaps it in for its SlidingWindowInferer.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import Inferer

__all__ = ["MirroredInferer"]


class MirroredInferer(Inferer):
    """
    Run ``inferer`` on the input and on its flips along every non-empty subset of ``spatial_axes``, flip each
    prediction back and return the mean logits: ``2 ** len(spatial_axes)`` passes. Mirror only along the axes the
    network was trained to be symmetric in (the axes of its random flips), or the mirrored passes are worse guesses.

    Args:
        inferer: the inferer to run for each pass (e.g. a ``SlidingWindowInferer``).
        spatial_axes: spatial axes (0 for the first spatial dimension) to mirror along; empty for no mirroring.
    """

    def __init__(self, inferer: Inferer, spatial_axes: Sequence[int] = (0,)) -> None:
        super().__init__()
        self.inferer = inferer
        self.spatial_axes = tuple(int(a) for a in spatial_axes)
        if len(set(self.spatial_axes)) != len(self.spatial_axes) or any(a < 0 for a in self.spatial_axes):
            raise ValueError(f"spatial_axes should be distinct non-negative axes, got {spatial_axes}.")

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        if self.spatial_axes and max(self.spatial_axes) > inputs.ndim - 3:
            raise ValueError(
                f"spatial_axes {self.spatial_axes} beyond the {inputs.ndim - 2} spatial dims of the input."
            )
        total = self.inferer(inputs, network, *args, **kwargs)
        subsets = [
            c for n in range(1, len(self.spatial_axes) + 1) for c in itertools.combinations(self.spatial_axes, n)
        ]
        for subset in subsets:
            dims = [a + 2 for a in subset]
            total = total + torch.flip(self.inferer(torch.flip(inputs, dims), network, *args, **kwargs), dims)
        return total / (len(subsets) + 1)
