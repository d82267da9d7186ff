"""Imaging physics of the phantoms: grids and affines in millimetres, smooth random fields, partial-volume blur,
Rician noise, NIfTI output, and the argument checks shared by every anatomy."""

from __future__ import annotations

import math
from collections.abc import Sequence

import nibabel as nib
import numpy as np
from scipy import ndimage


def as_triple(values: Sequence[float], name: str) -> tuple[float, float, float]:
    try:
        triple = tuple(float(v) for v in values)
    except TypeError as err:
        raise ValueError(f"{name} must be a sequence of 3 numbers, got {values!r}") from err
    if len(triple) != 3:
        raise ValueError(f"{name} must have 3 entries (X, Y, Z), got {len(triple)}: {values!r}")
    return triple  # type: ignore[return-value]


def checked_shape(shape: Sequence[int], minimum: int) -> tuple[int, int, int]:
    triple = as_triple(shape, "shape")
    if any(v != int(v) for v in triple):
        raise ValueError(f"shape must hold integers, got {shape!r}")
    if min(triple) < minimum:
        raise ValueError(f"shape must be at least {minimum} voxels along every axis, got {tuple(shape)!r}")
    return int(triple[0]), int(triple[1]), int(triple[2])


def checked_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    triple = as_triple(spacing, "spacing")
    if not all(math.isfinite(v) and v > 0 for v in triple):
        raise ValueError(f"spacing must be positive finite millimetres, got {spacing!r}")
    return triple


def checked_num_cases(num_cases: int) -> int:
    if isinstance(num_cases, bool) or not isinstance(num_cases, (int, np.integer)) or num_cases < 1:
        raise ValueError(f"num_cases must be an integer >= 1, got {num_cases!r}")
    return int(num_cases)


def checked_choice(value: str, allowed: Sequence[str], name: str) -> str:
    if not isinstance(value, str) or value.strip().upper() not in {a.upper() for a in allowed}:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return next(a for a in allowed if a.upper() == value.strip().upper())


def ras_affine(shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """Axis-aligned RAS affine whose volume centre is world (0, 0, 0)."""
    affine = np.eye(4, dtype=np.float64)
    for axis in range(3):
        affine[axis, axis] = spacing[axis]
        affine[axis, 3] = -0.5 * (shape[axis] - 1) * spacing[axis]
    return affine


def axis_mm(shape: Sequence[int], spacing: Sequence[float]) -> list[np.ndarray]:
    """World coordinate (mm) of every index along each axis, shaped to broadcast over (X, Y, Z)."""
    axes = []
    for axis in range(3):
        values = (np.arange(shape[axis], dtype=np.float32) - 0.5 * (shape[axis] - 1)) * np.float32(spacing[axis])
        view = [1, 1, 1]
        view[axis] = shape[axis]
        axes.append(values.reshape(view))
    return axes


def bspline_weights(positions_mm: np.ndarray, knots_mm: np.ndarray, cell_mm: float) -> np.ndarray:
    """Cubic B-spline weights (positions x knots), rows scaled so iid knot values give unit variance."""
    t = np.abs(positions_mm[:, None] - knots_mm[None, :]) / cell_mm
    w = np.where(t < 1.0, 2.0 / 3.0 - t**2 + 0.5 * t**3, np.where(t < 2.0, (2.0 - t) ** 3 / 6.0, 0.0))
    return w / np.sqrt((w**2).sum(axis=1, keepdims=True))


def smooth_field(
    rng: np.random.Generator,
    shape: Sequence[int],
    spacing: Sequence[float],
    cell_mm: float,
    channels: int = 1,
) -> np.ndarray:
    """Random smooth field (zero mean, unit variance, features of ~``cell_mm``) for anatomy, warps and bias.

    A cubic B-spline through random values on a lattice of ``cell_mm`` pitch: smooth, defined in millimetres so
    its physical scale does not depend on the voxel size (scipy's spline zoom works in voxels), and cheap (three
    small matrix products).
    """
    weights = []
    for axis in range(3):
        half = 0.5 * shape[axis] * spacing[axis]
        count = int(math.ceil(half / cell_mm)) + 2
        knots = np.arange(-count, count + 1, dtype=np.float64) * cell_mm
        positions = (np.arange(shape[axis]) - 0.5 * (shape[axis] - 1)) * spacing[axis]
        weights.append(bspline_weights(positions, knots, cell_mm).astype(np.float32))
    knot_shape = [w.shape[1] for w in weights]
    coarse = rng.standard_normal((channels, *knot_shape), dtype=np.float32)
    field = np.einsum("cijk,xi->cxjk", coarse, weights[0])
    field = np.einsum("cxjk,yj->cxyk", field, weights[1])
    field = np.einsum("cxyk,zk->cxyz", field, weights[2], optimize=True)
    field = np.ascontiguousarray(field, dtype=np.float32)
    return field if channels > 1 else field[0]


def blur(volume: np.ndarray, sigma_vox: Sequence[float]) -> np.ndarray:
    """Gaussian blur (sigma per axis, in voxels; below 0.2 an axis is left alone) with edge padding."""
    sigma = [float(s) if s >= 0.2 else 0.0 for s in sigma_vox]
    return ndimage.gaussian_filter(np.asarray(volume, dtype=np.float32), sigma, mode="nearest", truncate=2.5)


def partial_volume_sigma(spacing: Sequence[float], psf_mm: float) -> list[float]:
    """Blur (voxels) that mimics the scanner's point spread plus voxel averaging."""
    return [math.sqrt(0.4**2 + (psf_mm / s) ** 2) for s in spacing]


def rician(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """
    Magnitude of a complex signal with Gaussian noise in both channels, as MR magnitude images are. Not MONAI's
    ``RandRicianNoise``: that draws from its own random state, and a phantom draws every number from its case's
    seeded generator, so case ``i`` of a set is the same whatever else was generated before it.
    """
    real = signal + rng.standard_normal(signal.shape, dtype=np.float32) * np.float32(sigma)
    imag = rng.standard_normal(signal.shape, dtype=np.float32) * np.float32(sigma)
    return np.sqrt(real * real + imag * imag)


def save_nifti(array: np.ndarray, affine: np.ndarray, path: str, dtype: type) -> None:
    image = nib.Nifti1Image(np.asarray(array, dtype=dtype), affine)
    image.header.set_data_dtype(dtype)
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    nib.save(image, path)
