"""
Test-time mirroring: the average of a network's logits over an image and its mirror images, each mapped back, as
nnU-Net predicts by default. A sliding-window inferer with one more option, so bundle configs read like the model
zoo's and tools that show an inferer's settings (MONAI Label logs them) still show the window's.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import SlidingWindowInferer

__all__ = ["MirroredSlidingWindowInferer"]


class MirroredSlidingWindowInferer(SlidingWindowInferer):
    """
    MONAI's ``SlidingWindowInferer`` run on the input and on its flips along every non-empty subset of
    ``mirror_axes``, each prediction flipped back, returning the mean logits: ``2 ** len(mirror_axes)`` passes
    (one, exactly the sliding-window inferer, for no axes). Mirror only along the axes the network was trained to be
    symmetric in (the axes of its random flips), or the mirrored passes are worse guesses.

    Args:
        args, kwargs: those of ``SlidingWindowInferer`` (``roi_size``, ``sw_batch_size``, ``overlap``, ``mode``...).
        mirror_axes: spatial axes (0 for the first spatial dimension) to mirror along; empty for no mirroring.
    """

    def __init__(self, *args: Any, mirror_axes: Sequence[int] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mirror_axes = tuple(int(a) for a in mirror_axes)
        if len(set(self.mirror_axes)) != len(self.mirror_axes) or any(a < 0 for a in self.mirror_axes):
            raise ValueError(f"mirror_axes should be distinct non-negative axes, got {mirror_axes}.")

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        if self.mirror_axes and max(self.mirror_axes) > inputs.ndim - 3:
            raise ValueError(f"mirror_axes {self.mirror_axes} beyond the {inputs.ndim - 2} spatial dims of the input.")
        total = super().__call__(inputs, network, *args, **kwargs)
        subsets = [c for n in range(1, len(self.mirror_axes) + 1) for c in itertools.combinations(self.mirror_axes, n)]
        for subset in subsets:
            dims = [a + 2 for a in subset]
            total = total + torch.flip(super().__call__(torch.flip(inputs, dims), network, *args, **kwargs), dims)
        return total / (len(subsets) + 1)
