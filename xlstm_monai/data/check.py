"""
Checks a datalist before any training or evaluation step.

Every problem is collected and reported together, one line per file, so a user fixes a dataset in one pass rather
than one crash per hour of training. Files are read with MONAI's ``LoadImage``, the reader the bundles use, so a
file that passes here is one the pipeline can read.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from monai.transforms import LoadImage

__all__ = ["DataCheckError", "DataCheckReport", "check_datalist"]

logger = logging.getLogger(__name__)


class DataCheckError(ValueError):
    """A datalist has problems that would fail or corrupt training; the message lists them, one line per file."""


@dataclass
class DataCheckReport:
    """Problems (errors) and warnings found, keyed by file."""

    checked: int = 0
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    warnings: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self, which: str = "problems") -> list[str]:
        return [f"{name}: {'; '.join(items)}" for name, items in getattr(self, which).items()]

    def summary(self) -> str:
        head = (
            f"checked {self.checked} cases: {len(self.problems)} file(s) with problems, "
            f"{len(self.warnings)} with warnings"
        )
        parts = (
            [head]
            + [f"  ERROR {line}" for line in self.lines()]
            + [f"  WARNING {line}" for line in self.lines("warnings")]
        )
        return "\n".join(parts)


def _load(path, loader: LoadImage):
    """(array (torch), affine (4x4 numpy)) of a file, or raise with the reader's reason."""
    image = loader(path)
    affine = image.affine.numpy() if hasattr(image, "affine") else np.eye(4)
    return torch.as_tensor(image), np.asarray(affine, dtype=np.float64)


def _spatial_shape(array: torch.Tensor, channels: int, name: str, report: DataCheckReport, spatial_dims: int):
    """Spatial shape of an image read channel-last, or None after recording why it is not usable."""
    if array.ndim == spatial_dims:
        if channels != 1:
            report.problems[name].append(f"has 1 channel, expected {channels}")
        return tuple(array.shape)
    if array.ndim == spatial_dims + 1:
        if array.shape[-1] != channels:
            report.problems[name].append(
                f"has {array.shape[-1]} channels (shape {tuple(array.shape)}), expected {channels}"
            )
        return tuple(array.shape[:spatial_dims])
    report.problems[name].append(f"is {array.ndim}D (shape {tuple(array.shape)}), expected a {spatial_dims}D volume")
    return None


def _check_label(
    label_name,
    label,
    label_affine,
    image_name,
    image_shape,
    image_affine,
    label_values,
    affine_tolerance,
    report,
    spatial_dims,
) -> None:
    shape = _spatial_shape(label, 1, label_name, report, spatial_dims)
    if shape is None:
        return
    if image_shape is not None and shape != image_shape:
        report.problems[label_name].append(f"shape {shape} differs from image {image_name} shape {image_shape}")
    if image_affine is not None and not np.allclose(label_affine, image_affine, atol=affine_tolerance):
        report.problems[label_name].append(
            f"affine differs from image {image_name}: label {np.round(label_affine, 3).tolist()} vs image "
            f"{np.round(image_affine, 3).tolist()}"
        )
    values = torch.unique(label)
    if not torch.isfinite(values.float()).all():
        report.problems[label_name].append("has NaN or infinite label values")
        return
    if label_values is not None:
        unknown = sorted(set(values.tolist()) - set(label_values))
        if unknown:
            shown = ", ".join(f"{v:g}" for v in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            report.problems[label_name].append(
                f"label values {shown} are not in the declared set {sorted(label_values)}"
            )
    if values.numel() == 1 and float(values[0]) == 0:
        report.warnings[label_name].append("label is empty (background only)")


def check_datalist(
    cases: Sequence[Mapping],
    label_values: Sequence[int | None] | None = None,
    validation: Sequence[Mapping] = (),
    num_classes: int | None = None,
    channels: int = 1,
    spatial_dims: int = 3,
    affine_tolerance: float = 1e-3,
    raise_error: bool = True,
) -> DataCheckReport:
    """
    Check every case of a datalist: each image (and label) exists and reads; images are ``spatial_dims``-D (or
    one more dimension holding ``channels``); intensities are finite; an image and its label share shape and
    affine (within ``affine_tolerance`` mm); label values are in ``label_values`` (segmentation) or the label is
    a class index below ``num_classes`` (classification). Warnings, which do not stop a run: an empty label, an
    image of constant intensity (normalisation makes it blank), an image in both the training and the validation
    set (the validation figures would be optimistic).

    Args:
        cases: datalist entries with "image" and, where labeled, "label" (the training set).
        validation: the validation set's entries, checked the same way.
        label_values: declared label values of a segmentation (None entries are ignored).
        num_classes: number of classes of a classification datalist.
        raise_error: raise :class:`DataCheckError` listing every problem; otherwise just return the report.
    """
    loader = LoadImage(image_only=True)
    declared = None if label_values is None else [int(v) for v in label_values if v is not None]
    report = DataCheckReport(checked=len(cases) + len(validation))
    training_images = {str(c.get("image")) for c in cases}
    for image in sorted({str(c.get("image")) for c in validation} & training_images):
        report.warnings[image].append("is in both the training and the validation set")
    for index, case in enumerate(list(cases) + list(validation)):
        if "image" not in case:
            report.problems[f"datalist entry {index}"].append("has no 'image'")
            continue
        image_name = str(case["image"])
        image_shape = image_affine = None
        try:
            image, image_affine = _load(case["image"], loader)
        except Exception as error:  # any reader failure is reported with the reader's reason
            report.problems[image_name].append(f"cannot be read ({_reason(error)})")
        else:
            image_shape = _spatial_shape(image, channels, image_name, report, spatial_dims)
            bad = (~torch.isfinite(image.float())).sum().item()
            if bad:
                report.problems[image_name].append(f"has {bad} NaN or infinite voxels")
            elif image.numel() and image.min() == image.max():
                report.warnings[image_name].append(
                    f"has constant intensity {float(image.min()):g}: normalised, it is a blank input"
                )
        label = case.get("label")
        if label is None:
            continue
        if num_classes is not None or isinstance(label, (int, np.integer)):
            if num_classes is not None and not (isinstance(label, (int, np.integer)) and 0 <= int(label) < num_classes):
                report.problems[image_name].append(f"class label {label!r} is not a class index below {num_classes}")
            continue
        label_name = str(label)
        try:
            label_array, label_affine = _load(label, loader)
        except Exception as error:
            report.problems[label_name].append(f"cannot be read ({_reason(error)})")
            continue
        _check_label(
            label_name,
            label_array,
            label_affine,
            image_name,
            image_shape,
            image_affine,
            declared,
            affine_tolerance,
            report,
            spatial_dims,
        )
    for line in report.lines("warnings"):
        logger.warning(f"data check: {line}")
    if report.ok:
        logger.info(f"data check: {report.checked} cases passed")
    elif raise_error:
        raise DataCheckError(report.summary())
    return report


def _reason(error: Exception) -> str:
    """The innermost message of a reader error (MONAI wraps the reader's own)."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}"[:200]
