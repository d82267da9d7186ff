"""Hausdorff distance in millimetres on the images' own voxel grids."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.data import MetaTensor
from monai.handlers import HausdorffDistance

__all__ = ["HausdorffDistanceMM"]


class HausdorffDistanceMM(HausdorffDistance):
    """
    ``monai.handlers.HausdorffDistance`` that passes each prediction's voxel spacing (read from its affine) to
    the metric, so distances are in millimetres on anisotropic or resampled grids rather than in voxels.
    Arguments as ``monai.handlers.HausdorffDistance``; use ``percentile=95`` for HD95.
    """

    def update(self, output: Sequence[torch.Tensor]) -> None:
        if len(output) != 2:
            raise ValueError(f"output must have length 2, got {len(output)}.")
        y_pred, y = output
        if isinstance(y_pred, torch.Tensor):  # a collated batch: one case at a time keeps per-case spacings
            y_pred, y = list(y_pred), list(y)
        for pred, label in zip(y_pred, y):
            spacing = tuple(float(s) for s in pred.pixdim) if isinstance(pred, MetaTensor) else None
            self.metric_fn(pred[None], label[None], spacing=spacing)
