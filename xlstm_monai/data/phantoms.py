"""Synthetic 3D phantoms written as NIfTI: the embedded default data of the bundles.

They let every bundle run (demo, CPU tests, small training runs) without a download, while looking enough like
the real modality that transforms, intensity windows and networks behave as on real data:

* ``heart_phantom``: MM-WHS-like whole-heart CT (Hounsfield units) or bright-blood MRI, 7 labelled structures
  embedded in a torso with lungs, fat and spine.
* ``hippocampus_phantom``: Medical Segmentation Decathlon Task04-like T1 crop, anterior/posterior labels.
* ``brain_phantom``: IXI-like 2 mm T1 head whose anatomy carries a CN / AD class signal (ventricles, hippocampi,
  sulci) with realistic within-class variation.

All geometry is defined in millimetres on a RAS world grid centred on (0, 0, 0), so anatomy keeps its physical
size whatever ``shape`` and ``spacing`` are. Everything is vectorised numpy (implicit shapes, B-spline random
fields, separable blurs), so a default-size phantom takes a fraction of a second on a small CPU. Case ``i`` of a
set uses ``seed + i``, which makes every written set reproducible.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from xlstm_monai.data.label_codes import HIPPOCAMPUS_LABELS, MMWHS_LABELS

__all__ = [
    "MARKER",
    "PHANTOM_KINDS",
    "write_phantoms",
    "heart_phantom",
    "write_heart_phantoms",
    "hippocampus_phantom",
    "write_hippocampus_phantoms",
    "brain_phantom",
    "write_brain_phantoms",
]

_HEART_MODALITY_PREFIX = {"ct": "ct", "mr": "mr"}
_MIN_HEART_SIZE = 24
_MIN_HIPPOCAMPUS_SIZE = 16
_MIN_BRAIN_SIZE = 24
_FAR = np.float32(1.0e3)  # signed distance used outside a structure's bounding box (mm)

_Coords = tuple[np.ndarray, np.ndarray, np.ndarray]


# ----------------------------------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------------------------------


def _as_triple(values: Sequence[float], name: str) -> tuple[float, float, float]:
    try:
        triple = tuple(float(v) for v in values)
    except TypeError as err:
        raise ValueError(f"{name} must be a sequence of 3 numbers, got {values!r}") from err
    if len(triple) != 3:
        raise ValueError(f"{name} must have 3 entries (X, Y, Z), got {len(triple)}: {values!r}")
    return triple  # type: ignore[return-value]


def _checked_shape(shape: Sequence[int], minimum: int) -> tuple[int, int, int]:
    triple = _as_triple(shape, "shape")
    if any(v != int(v) for v in triple):
        raise ValueError(f"shape must hold integers, got {shape!r}")
    if min(triple) < minimum:
        raise ValueError(f"shape must be at least {minimum} voxels along every axis, got {tuple(shape)!r}")
    return int(triple[0]), int(triple[1]), int(triple[2])


def _checked_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    triple = _as_triple(spacing, "spacing")
    if not all(math.isfinite(v) and v > 0 for v in triple):
        raise ValueError(f"spacing must be positive finite millimetres, got {spacing!r}")
    return triple


def _checked_num_cases(num_cases: int) -> int:
    if isinstance(num_cases, bool) or not isinstance(num_cases, (int, np.integer)) or num_cases < 1:
        raise ValueError(f"num_cases must be an integer >= 1, got {num_cases!r}")
    return int(num_cases)


def _checked_choice(value: str, allowed: Sequence[str], name: str) -> str:
    if not isinstance(value, str) or value.strip().upper() not in {a.upper() for a in allowed}:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return next(a for a in allowed if a.upper() == value.strip().upper())


# ----------------------------------------------------------------------------------------------------------------
# grids, random fields, filtering, I/O
# ----------------------------------------------------------------------------------------------------------------


def _ras_affine(shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """Axis-aligned RAS affine whose volume centre is world (0, 0, 0)."""
    affine = np.eye(4, dtype=np.float64)
    for axis in range(3):
        affine[axis, axis] = spacing[axis]
        affine[axis, 3] = -0.5 * (shape[axis] - 1) * spacing[axis]
    return affine


def _axis_mm(shape: Sequence[int], spacing: Sequence[float]) -> list[np.ndarray]:
    """World coordinate (mm) of every index along each axis, shaped to broadcast over (X, Y, Z)."""
    axes = []
    for axis in range(3):
        values = (np.arange(shape[axis], dtype=np.float32) - 0.5 * (shape[axis] - 1)) * np.float32(spacing[axis])
        view = [1, 1, 1]
        view[axis] = shape[axis]
        axes.append(values.reshape(view))
    return axes


def _rotation_matrix(angles_deg: Sequence[float]) -> np.ndarray:
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _random_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    return _rotation_matrix(rng.uniform(-max_deg, max_deg, 3))


def _unit(vector: Sequence[float]) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64)
    return vector / np.linalg.norm(vector)


def _frame(primary: Sequence[float], secondary: Sequence[float]) -> np.ndarray:
    """Orthonormal frame (columns) whose first axis is ``primary`` and second lies towards ``secondary``."""
    u = _unit(primary)
    v = np.asarray(secondary, dtype=np.float64)
    v = _unit(v - np.dot(v, u) * u)
    return np.stack([u, v, np.cross(u, v)], axis=1)


def _bspline_weights(positions_mm: np.ndarray, knots_mm: np.ndarray, cell_mm: float) -> np.ndarray:
    """Cubic B-spline weights (positions x knots), rows scaled so iid knot values give unit variance."""
    t = np.abs(positions_mm[:, None] - knots_mm[None, :]) / cell_mm
    w = np.where(t < 1.0, 2.0 / 3.0 - t**2 + 0.5 * t**3, np.where(t < 2.0, (2.0 - t) ** 3 / 6.0, 0.0))
    return w / np.sqrt((w**2).sum(axis=1, keepdims=True))


def _smooth_field(
    rng: np.random.Generator,
    shape: Sequence[int],
    spacing: Sequence[float],
    cell_mm: float,
    channels: int = 1,
) -> np.ndarray:
    """Random smooth field (zero mean, unit variance, features of ~``cell_mm``) for anatomy, warps and bias.

    A cubic B-spline through random values on a lattice of ``cell_mm`` pitch: smooth, defined in millimetres so
    its physical scale does not depend on the voxel size, and cheap (three small matrix products).
    """
    weights = []
    for axis in range(3):
        half = 0.5 * shape[axis] * spacing[axis]
        count = int(math.ceil(half / cell_mm)) + 2
        knots = np.arange(-count, count + 1, dtype=np.float64) * cell_mm
        positions = (np.arange(shape[axis]) - 0.5 * (shape[axis] - 1)) * spacing[axis]
        weights.append(_bspline_weights(positions, knots, cell_mm).astype(np.float32))
    knot_shape = [w.shape[1] for w in weights]
    coarse = rng.standard_normal((channels, *knot_shape), dtype=np.float32)
    field = np.einsum("cijk,xi->cxjk", coarse, weights[0])
    field = np.einsum("cxjk,yj->cxyk", field, weights[1])
    field = np.einsum("cxyk,zk->cxyz", field, weights[2], optimize=True)
    field = np.ascontiguousarray(field, dtype=np.float32)
    return field if channels > 1 else field[0]


def _gaussian_kernel(sigma: float, max_radius: int) -> np.ndarray:
    radius = max(1, min(int(math.ceil(2.5 * sigma)), max_radius))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).astype(np.float32)


def _blur(volume: np.ndarray, sigma_vox: Sequence[float]) -> np.ndarray:
    """Separable Gaussian blur (sigma per axis, in voxels) with edge padding; shifted sums are fast for small sigma."""
    out = np.asarray(volume, dtype=np.float32)
    for axis, sigma in enumerate(sigma_vox):
        if sigma < 0.2:
            continue
        kernel = _gaussian_kernel(float(sigma), out.shape[axis] - 1)
        radius = (len(kernel) - 1) // 2
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        n = out.shape[axis]
        acc = np.zeros_like(out)
        for offset, weight in enumerate(kernel):
            index = [slice(None)] * 3
            index[axis] = slice(offset, offset + n)
            acc += weight * padded[tuple(index)]
        out = acc
    return out


def _partial_volume_sigma(spacing: Sequence[float], psf_mm: float) -> list[float]:
    """Blur (voxels) that mimics the scanner's point spread plus voxel averaging."""
    return [math.sqrt(0.4**2 + (psf_mm / s) ** 2) for s in spacing]


def _rician(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of a complex signal with Gaussian noise in both channels, as MR magnitude images are."""
    real = signal + rng.standard_normal(signal.shape, dtype=np.float32) * np.float32(sigma)
    imag = rng.standard_normal(signal.shape, dtype=np.float32) * np.float32(sigma)
    return np.sqrt(real * real + imag * imag)


def _save_nifti(array: np.ndarray, affine: np.ndarray, path: str, dtype: type) -> None:
    image = nib.Nifti1Image(np.asarray(array, dtype=dtype), affine)
    image.header.set_data_dtype(dtype)
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    nib.save(image, path)


# ----------------------------------------------------------------------------------------------------------------
# implicit shapes (approximate signed distances in mm, negative inside)
# ----------------------------------------------------------------------------------------------------------------


def _ellipsoid_sdf(q: _Coords, center: np.ndarray, frame: np.ndarray, radii: Sequence[float]) -> np.ndarray:
    """First-order distance to an ellipsoid; exact along its axes, smooth everywhere, cheap."""
    d = [q[i] - np.float32(center[i]) for i in range(3)]
    rho2 = None
    grad2 = None
    for k in range(3):
        local = d[0] * np.float32(frame[0, k]) + d[1] * np.float32(frame[1, k]) + d[2] * np.float32(frame[2, k])
        n = local / np.float32(radii[k])
        g = n / np.float32(radii[k])
        rho2 = n * n if rho2 is None else rho2 + n * n
        grad2 = g * g if grad2 is None else grad2 + g * g
    rho = np.sqrt(rho2)
    return (rho - 1.0) * rho / np.sqrt(grad2 + np.float32(1e-12))


def _tube_sdf(q: _Coords, points: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Distance to a chain of cones swept along ``points`` with linearly varying radius (vessels, outflow tracts)."""
    result = None
    for a, b, ra, rb in zip(points[:-1], points[1:], radii[:-1], radii[1:]):
        seg = (b - a).astype(np.float32)
        length2 = np.float32(max(float(np.dot(seg, seg)), 1e-6))
        d = [q[i] - np.float32(a[i]) for i in range(3)]
        t = np.clip((d[0] * seg[0] + d[1] * seg[1] + d[2] * seg[2]) / length2, 0.0, 1.0)
        dist2 = sum((d[i] - t * seg[i]) ** 2 for i in range(3))
        sdf = np.sqrt(dist2) - (np.float32(ra) + t * np.float32(rb - ra))
        result = sdf if result is None else np.minimum(result, sdf)
    return result


def _plane_sdf(q: _Coords, point: np.ndarray, outward: np.ndarray) -> np.ndarray:
    return sum((q[i] - np.float32(point[i])) * np.float32(outward[i]) for i in range(3))


@dataclass
class _Structure:
    """One implicit shape: a signed-distance function and a bounding sphere (centre, radius) in the shape frame."""

    sdf: Callable[[_Coords], np.ndarray]
    center: np.ndarray
    radius: float


@dataclass
class _Pose:
    """Places a shape frame in the world: p_world = rotation @ (scale * q) + translation, plus a smooth warp."""

    rotation: np.ndarray
    translation: np.ndarray
    scale: float


def _posed_coords(shape: Sequence[int], spacing: Sequence[float], pose: _Pose, warp_mm: np.ndarray | None) -> _Coords:
    """Shape-frame coordinates of every voxel: inverse pose, then a smooth displacement for shape variety."""
    axes = _axis_mm(shape, spacing)
    shifted = [axes[i] - np.float32(pose.translation[i]) for i in range(3)]
    inv = (pose.rotation.T / pose.scale).astype(np.float32)
    coords = []
    for i in range(3):
        c = shifted[0] * inv[i, 0] + shifted[1] * inv[i, 1] + shifted[2] * inv[i, 2]
        if warp_mm is not None:
            c = c + warp_mm[i] / np.float32(pose.scale)
        coords.append(np.ascontiguousarray(c, dtype=np.float32))
    return coords[0], coords[1], coords[2]


def _evaluate(
    structure: _Structure,
    coords: _Coords,
    pose: _Pose,
    spacing: Sequence[float],
    margin_mm: float,
) -> np.ndarray:
    """World-mm signed distance of a structure, computed only inside its bounding box (``_FAR`` elsewhere)."""
    shape = coords[0].shape
    center_w = pose.rotation @ (pose.scale * np.asarray(structure.center)) + pose.translation
    half = pose.scale * structure.radius + margin_mm
    slices = []
    for axis in range(3):
        centre_index = center_w[axis] / spacing[axis] + 0.5 * (shape[axis] - 1)
        lo = int(math.floor(centre_index - half / spacing[axis]))
        hi = int(math.ceil(centre_index + half / spacing[axis])) + 1
        lo, hi = max(lo, 0), min(hi, shape[axis])
        if hi <= lo:
            return np.full(shape, _FAR, dtype=np.float32)
        slices.append(slice(lo, hi))
    box = tuple(slices)
    out = np.full(shape, _FAR, dtype=np.float32)
    out[box] = structure.sdf((coords[0][box], coords[1][box], coords[2][box])) * np.float32(pose.scale)
    return out


# ----------------------------------------------------------------------------------------------------------------
# heart
# ----------------------------------------------------------------------------------------------------------------

# Heart frame: RAS millimetres, origin near the centre of the heart's bounding box (before the per-case pose).
_HEART_APEX_DIR = _unit([-0.62, 0.55, -0.56])  # left, anterior, inferior
_HEART_SEPTAL_DIR = np.array([0.7, 0.6, 0.4])  # from the LV towards the RV: right, anterior
_HEART_SHIFT = np.array([0.0, -1.0, -6.0])  # moves the designed anatomy so its bounding box is centred
_HEART_DESIGN_SCALE = 0.95

# Labelled structures from highest to lowest priority: a lower one never takes a voxel of a higher one.
_HEART_PRIORITY = (
    "left_ventricle",
    "myocardium",
    "ascending_aorta",
    "right_ventricle",
    "pulmonary_artery",
    "left_atrium",
    "right_atrium",
)
_HEART_WALL_MM = 2.5  # separation between blood pools that are not connected through a valve
# Pairs connected through a valve or muscle get thinner (or no) separation.
_HEART_GAPS_MM = {
    ("left_ventricle", "myocardium"): 0.0,
    ("myocardium", "right_ventricle"): 0.0,
    ("left_ventricle", "ascending_aorta"): 1.0,
    ("myocardium", "ascending_aorta"): 1.0,
    ("left_ventricle", "left_atrium"): 1.5,
    ("right_ventricle", "pulmonary_artery"): 1.0,
    ("right_ventricle", "right_atrium"): 1.5,
}


def _heart_anatomy(rng: np.random.Generator, scale: float) -> dict[str, _Structure]:
    """Per-case heart geometry (heart frame, mm) with per-structure size, position and direction jitter.

    ``scale`` is the heart's world scale: the myocardium keeps a realistic world thickness (9.5-12.5 mm) whatever
    the heart size, so it stays a few voxels thick on coarse grids.
    """

    def size() -> float:
        return float(rng.uniform(0.9, 1.1))

    def pos(sd: float = 2.0) -> np.ndarray:
        return rng.normal(0.0, sd, 3)

    def point(*xyz: float) -> np.ndarray:
        return _HEART_DESIGN_SCALE * np.asarray(xyz, dtype=np.float64) + _HEART_SHIFT

    k = _HEART_DESIGN_SCALE
    frame = _frame(_HEART_APEX_DIR + rng.normal(0.0, 0.06, 3), _HEART_SEPTAL_DIR)
    u = frame[:, 0]

    # Left ventricle: ellipsoid cut by the mitral/aortic (base) plane, apex towards left-anterior-inferior.
    a, b, c = 40.0 * k * size(), 24.0 * k * size(), 22.0 * k * size()
    thickness = float(rng.uniform(9.5, 12.5)) / scale
    mitral = point(0.0, -10.0, 5.0) + pos()
    lv_center = mitral + 0.78 * a * u
    lv_radii = (a, b, c)
    epi_radii = (a + 0.8 * thickness, b + thickness, c + thickness)

    def lv_sdf(q: _Coords) -> np.ndarray:
        return np.maximum(_ellipsoid_sdf(q, lv_center, frame, lv_radii), _plane_sdf(q, mitral, -u))

    def myo_sdf(q: _Coords) -> np.ndarray:
        epi = _ellipsoid_sdf(q, lv_center, frame, epi_radii)
        cavity = _ellipsoid_sdf(q, lv_center, frame, lv_radii)
        return np.maximum(np.maximum(epi, -cavity), _plane_sdf(q, mitral, -u))

    # Right ventricle: larger ellipsoid on the septal side; the LV myocardium (higher priority) carves the crescent.
    rv_frame = _frame(u + rng.normal(0.0, 0.05, 3), _HEART_SEPTAL_DIR + rng.normal(0.0, 0.1, 3))
    rv_center = lv_center + (32.0 * k + rng.normal(0.0, 1.5)) * frame[:, 1] - 8.0 * k * u + pos(1.5)
    rv_radii = (36.0 * k * size(), 22.0 * k * size(), 38.0 * k * size())
    aortic_valve = point(10.0, 2.0, 12.0) + pos(1.5)
    pulmonary_valve = aortic_valve + k * np.array([-18.0, 14.0, 10.0]) + pos(1.5)
    rvot = np.stack([rv_center + k * np.array([-4.0, 0.0, 10.0]), pulmonary_valve])
    rvot_radii = np.array([12.0, 11.0]) * k * size()

    def rv_sdf(q: _Coords) -> np.ndarray:
        return np.minimum(_ellipsoid_sdf(q, rv_center, rv_frame, rv_radii), _tube_sdf(q, rvot, rvot_radii))

    # Ascending aorta: from the aortic valve up and to the right, then curving back towards the arch.
    ao_radius = 13.5 * k * size()
    ao_points = np.stack(
        [
            aortic_valve,
            aortic_valve + k * np.array([5.0, 4.0, 20.0]) + pos(2.0),
            aortic_valve + k * np.array([1.0, -4.0, 36.0]) + pos(2.0),
        ]
    )
    ao_radii = np.array([1.0, 1.05, 1.0]) * ao_radius

    def ao_sdf(q: _Coords) -> np.ndarray:
        return _tube_sdf(q, ao_points, ao_radii)

    # Pulmonary artery: trunk superior-posterior-left, then left and right branches (the right one behind the aorta).
    pa_radius = 13.0 * k * size()
    bifurcation = pulmonary_valve + k * np.array([-6.0, -16.0, 22.0]) + pos(2.0)
    pa_trunk = np.stack([pulmonary_valve, bifurcation])
    lpa = np.stack([bifurcation, bifurcation + k * np.array([-20.0, -18.0, 2.0]) + pos(2.0)])
    rpa = np.stack(
        [
            bifurcation,
            bifurcation + k * np.array([14.0, -20.0, 0.0]) + pos(1.5),
            bifurcation + k * np.array([34.0, -24.0, -2.0]) + pos(2.0),
        ]
    )
    branch = 0.75 * pa_radius

    def pa_sdf(q: _Coords) -> np.ndarray:
        trunk = _tube_sdf(q, pa_trunk, np.array([pa_radius, pa_radius]))
        left = _tube_sdf(q, lpa, np.array([branch, 0.85 * branch]))
        right = _tube_sdf(q, rpa, np.array([branch, branch, 0.85 * branch]))
        return np.minimum(trunk, np.minimum(left, right))

    # Left atrium: posterior-superior, behind the LV base, with left and right pulmonary-vein ostia.
    la_center = point(-2.0, -30.0, 12.0) + pos()
    la_frame = _random_rotation(rng, 10.0)
    la_radii = (30.0 * k * size(), 22.0 * k * size(), 20.0 * k * size())
    veins = [
        np.stack([la_center + k * np.array([-18.0, -8.0, 4.0]), la_center + k * np.array([-38.0, -16.0, 8.0])]),
        np.stack([la_center + k * np.array([18.0, -8.0, 4.0]), la_center + k * np.array([38.0, -16.0, 6.0])]),
    ]
    vein_radii = np.array([7.0, 6.0]) * k

    def la_sdf(q: _Coords) -> np.ndarray:
        out = _ellipsoid_sdf(q, la_center, la_frame, la_radii)
        for vein in veins:
            out = np.minimum(out, _tube_sdf(q, vein, vein_radii))
        return out

    # Right atrium: right of the LA, superior-right of the RV.
    ra_center = point(36.0, -4.0, 10.0) + pos()
    ra_frame = _random_rotation(rng, 10.0)
    ra_radii = (22.0 * k * size(), 23.0 * k * size(), 26.0 * k * size())

    def ra_sdf(q: _Coords) -> np.ndarray:
        return _ellipsoid_sdf(q, ra_center, ra_frame, ra_radii)

    def bound(points: np.ndarray, radius: float) -> tuple[np.ndarray, float]:
        lo, hi = points.min(axis=0), points.max(axis=0)
        centre = 0.5 * (lo + hi)
        return centre, float(np.linalg.norm(hi - centre) + radius)

    ao_c, ao_r = bound(ao_points, ao_radius * 1.05)
    pa_c, pa_r = bound(np.concatenate([pa_trunk, lpa, rpa]), pa_radius)
    rv_c, rv_r = bound(np.concatenate([rv_center[None], rvot]), max(max(rv_radii), 12.0))
    la_c, la_r = bound(np.concatenate([la_center[None]] + veins), max(la_radii))
    epi_r = max(epi_radii)
    return {
        "left_ventricle": _Structure(lv_sdf, lv_center, max(lv_radii)),
        "myocardium": _Structure(myo_sdf, lv_center, epi_r),
        "right_ventricle": _Structure(rv_sdf, rv_c, rv_r),
        "ascending_aorta": _Structure(ao_sdf, ao_c, ao_r),
        "pulmonary_artery": _Structure(pa_sdf, pa_c, pa_r),
        "left_atrium": _Structure(la_sdf, la_c, la_r),
        "right_atrium": _Structure(ra_sdf, ra_center, max(ra_radii)),
    }


def _heart_gap(higher: str, lower: str) -> float:
    return _HEART_GAPS_MM.get((higher, lower), _HEART_WALL_MM)


def _heart_labels(sdfs: dict[str, np.ndarray]) -> np.ndarray:
    """Non-overlapping MM-WHS labels: by priority, with walls (gaps) between blood pools."""
    shape = next(iter(sdfs.values())).shape
    label = np.zeros(shape, dtype=np.int16)
    for rank, name in enumerate(_HEART_PRIORITY):
        inside = sdfs[name] < 0
        for higher in _HEART_PRIORITY[:rank]:
            inside &= sdfs[higher] >= _heart_gap(higher, name)
        label[inside] = MMWHS_LABELS[name]
    return label


def _heart_extent(anatomy: dict[str, _Structure], rotation: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """World bounding box (mm) of the rotated and scaled heart, from a coarse 5 mm evaluation."""
    step, half = 5.0, 110.0
    n = int(2 * half / step) + 1
    pose = _Pose(rotation, np.zeros(3), scale)
    coords = _posed_coords((n, n, n), (step, step, step), pose, None)
    inside = np.zeros((n, n, n), dtype=bool)
    for structure in anatomy.values():
        inside |= _evaluate(structure, coords, pose, (step, step, step), 2.0 * step) < 0
    index = np.argwhere(inside)
    lo = (index.min(axis=0) - 0.5 * (n - 1)) * step - step
    hi = (index.max(axis=0) - 0.5 * (n - 1)) * step + step
    return lo, hi


def _heart_pose(
    rng: np.random.Generator,
    anatomy: dict[str, _Structure],
    scale: float,
    shape: Sequence[int],
    spacing: Sequence[float],
) -> _Pose:
    """Random rotation (<= 15 deg per axis) and shift (<= 10 mm) that keep the heart in view.

    The shift is drawn only among those that keep the whole heart (plus a margin for the smooth warp) inside the
    field of view; a heart too large for the view is first shrunk a little, then centred.
    """
    rotation = _random_rotation(rng, 15.0)
    lo, hi = _heart_extent(anatomy, rotation, scale)
    rooms = np.array([0.5 * n * s - 8.0 for n, s in zip(shape, spacing)])
    shrink = min(1.0, float(np.min(2.0 * rooms / (hi - lo))))
    if shrink < 1.0:  # too large for the field of view: shrink rather than cut the heart (never below 0.85 x)
        shrink = max(shrink, 0.85)
        scale, lo, hi = scale * shrink, lo * shrink, hi * shrink
    translation = np.zeros(3)
    for axis in range(3):
        room = rooms[axis]
        low, high = max(-10.0, -room - lo[axis]), min(10.0, room - hi[axis])
        draw = rng.uniform(-1.0, 1.0)
        if low <= high:
            translation[axis] = 0.5 * (low + high) + 0.5 * (high - low) * draw
        else:
            translation[axis] = -0.5 * (lo[axis] + hi[axis])
    return _Pose(rotation=rotation, translation=translation, scale=scale)


def _ellipse_sdf_2d(x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    """First-order distance (mm) to an axis-aligned ellipse in the axial plane: body outline, cavities."""
    nx, ny = (x - np.float32(cx)) / np.float32(ax), (y - np.float32(cy)) / np.float32(ay)
    rho = np.sqrt(nx * nx + ny * ny)
    grad = np.sqrt((nx / np.float32(ax)) ** 2 + (ny / np.float32(ay)) ** 2) + np.float32(1e-9)
    return (rho - 1.0) * rho / grad


# Tissue classes of the chest; each modality maps them to intensities.
_AIR, _LUNG, _FAT, _MUSCLE, _LIVER, _CORTEX, _MARROW, _DISC, _MYO, _LEFT_BLOOD, _RIGHT_BLOOD, _LUNG_VESSEL = range(12)


def _chest_tissues(
    rng: np.random.Generator,
    shape: Sequence[int],
    spacing: Sequence[float],
    heart_distance: np.ndarray,
    heart_label: np.ndarray,
) -> np.ndarray:
    """Tissue class of every voxel: torso, chest wall, ribs, spine, lungs, mediastinum, diaphragm, then the heart.

    The surroundings are laid out in world millimetres around a heart centred near (0, 0, 0), so the heart sits
    in anatomy (lungs on both sides, spine behind, chest wall in front) rather than floating in a blank volume.
    """
    x, y, z = _axis_mm(shape, spacing)
    full = tuple(shape)
    tissue = np.full(full, _AIR, dtype=np.uint8)

    midline = rng.uniform(8.0, 16.0)  # the body midline lies right of the heart's centre
    half_width, half_depth = rng.uniform(150.0, 175.0), rng.uniform(105.0, 125.0)
    skin_front = rng.uniform(58.0, 70.0)
    centre_y = skin_front - half_depth
    body = _ellipse_sdf_2d(x, y, midline, centre_y, half_width, half_depth)
    body = np.broadcast_to(body, full)
    subcutaneous, muscle, rib_zone = rng.uniform(6.0, 18.0), rng.uniform(8.0, 14.0), rng.uniform(9.0, 12.0)
    tissue[body < 0] = _FAT
    tissue[body < -subcutaneous] = _MUSCLE
    wall_inner = subcutaneous + muscle
    cavity_depth = wall_inner + rib_zone
    in_rib_zone = (body < -wall_inner) & (body >= -cavity_depth)
    rib_phase = np.sin((2.0 * np.pi / rng.uniform(20.0, 25.0)) * (z + 0.35 * (y - centre_y)) + rng.uniform(0, 6.3))
    tissue[in_rib_zone & (rib_phase > 0.45)] = _MARROW
    sternum = in_rib_zone & (np.abs(x - midline) < 14.0) & (y > centre_y)
    tissue[sternum] = _MARROW

    cavity = body < -cavity_depth
    tissue[cavity] = _LUNG
    # Diaphragm: the right (liver) dome is higher than the left one; below it lies abdomen.
    dome = (
        -62.0
        + rng.uniform(-6.0, 4.0)
        + rng.uniform(12.0, 18.0) * np.exp(-(((x - midline - 55.0) / 50.0) ** 2))
        + rng.uniform(3.0, 8.0) * np.exp(-(((x - midline + 60.0) / 45.0) ** 2))
        + 0.12 * np.minimum(y, 0.0)
    )
    abdomen = cavity & (z < dome)
    tissue[abdomen] = _LIVER

    # Spine: vertebral body (marrow inside a cortical shell, discs every ~28 mm) with paraspinal muscles behind.
    spine_y = rng.uniform(-74.0, -64.0)
    vertebra = _ellipse_sdf_2d(x, y, midline, spine_y, rng.uniform(19.0, 23.0), rng.uniform(15.0, 18.0))
    vertebra = np.broadcast_to(vertebra, full)
    paraspinal = np.broadcast_to((np.abs(x - midline) < 45.0) & (y < spine_y), full)
    tissue[paraspinal & (body < 0)] = _MUSCLE
    tissue[vertebra < 2.5] = _CORTEX
    disc_phase = np.mod(z + rng.uniform(0.0, 28.0), 28.0)
    tissue[(vertebra < 0) & np.broadcast_to(disc_phase >= 6.0, full)] = _MARROW
    tissue[(vertebra < 0.5) & np.broadcast_to(disc_phase < 6.0, full)] = _DISC

    # Mediastinum: fat with soft-tissue nodules between the lungs, around the descending aorta and oesophagus.
    aorta_x, aorta_y = midline - rng.uniform(20.0, 28.0), spine_y + rng.uniform(20.0, 26.0)
    aorta_r = rng.uniform(10.0, 13.0)
    aorta = np.broadcast_to(np.sqrt((x - aorta_x) ** 2 + (y - aorta_y) ** 2) - aorta_r, full)
    oesophagus = np.broadcast_to(np.sqrt((x - midline + 4.0) ** 2 + (y - spine_y - 24.0) ** 2) - 7.0, full)
    slab_width = rng.uniform(16.0, 24.0) + 5.0 * _smooth_field(rng, shape, spacing, 30.0)
    slab = (np.abs(x - midline) < slab_width) & (y > spine_y)
    fat_layer = 3.0 + 5.0 * (0.5 + 0.5 * np.tanh(_smooth_field(rng, shape, spacing, 25.0)))
    mediastinum = cavity & ~abdomen & (slab | (heart_distance < fat_layer + 3.0) | (aorta < 5.0) | (oesophagus < 4.0))
    tissue[mediastinum] = _FAT
    nodules = mediastinum & (_smooth_field(rng, shape, spacing, 12.0) > 1.3)
    tissue[nodules] = _MUSCLE
    tissue[cavity & (aorta < 1.5)] = _MUSCLE
    tissue[cavity & (aorta < 0)] = _LEFT_BLOOD
    tissue[cavity & (oesophagus < 0)] = _MUSCLE

    # Lung vessels: where two smooth fields both cross zero, i.e. along random branching curves.
    pair = _smooth_field(rng, shape, spacing, 16.0, channels=2)
    width = np.float32(0.1)
    vessels = (np.abs(pair[0]) < width) & (np.abs(pair[1]) < width) & (tissue == _LUNG)
    tissue[vessels] = _LUNG_VESSEL

    # Heart: epicardial fat and pericardium, walls (RV free wall, atrial walls, septa), then the labelled pools.
    tissue[heart_distance < fat_layer] = _FAT
    tissue[(heart_distance < fat_layer) & (heart_distance >= fat_layer - 1.2)] = _MUSCLE
    tissue[heart_distance < _HEART_WALL_MM] = _MYO
    for name in ("left_ventricle", "left_atrium", "ascending_aorta"):
        tissue[heart_label == MMWHS_LABELS[name]] = _LEFT_BLOOD
    for name in ("right_ventricle", "right_atrium", "pulmonary_artery"):
        tissue[heart_label == MMWHS_LABELS[name]] = _RIGHT_BLOOD
    tissue[heart_label == MMWHS_LABELS["myocardium"]] = _MYO
    return tissue


def _ct_intensities(rng: np.random.Generator) -> np.ndarray:
    """Hounsfield units per tissue class for one contrast-enhanced cardiac CT."""
    left = rng.uniform(300.0, 450.0)
    right = float(np.clip(left + rng.uniform(-150.0, 100.0), 180.0, 520.0))
    table = np.zeros(12, dtype=np.float32)
    table[_AIR] = -1000.0
    table[_LUNG] = rng.uniform(-880.0, -820.0)
    table[_FAT] = rng.uniform(-115.0, -80.0)
    table[_MUSCLE] = rng.uniform(35.0, 60.0)
    table[_LIVER] = rng.uniform(60.0, 100.0)
    table[_CORTEX] = rng.uniform(700.0, 900.0)
    table[_MARROW] = rng.uniform(350.0, 480.0)
    table[_DISC] = rng.uniform(70.0, 100.0)
    table[_MYO] = rng.uniform(100.0, 130.0)
    table[_LEFT_BLOOD] = left
    table[_RIGHT_BLOOD] = right
    table[_LUNG_VESSEL] = rng.uniform(80.0, 200.0)
    return table


def _mr_intensities(rng: np.random.Generator) -> np.ndarray:
    """Relative bright-blood (SSFP) signal per tissue class: blood and fat bright, myocardium, lung and bone dark."""
    left = rng.uniform(0.85, 1.0)
    table = np.zeros(12, dtype=np.float32)
    table[_AIR] = 0.0
    table[_LUNG] = rng.uniform(0.03, 0.08)
    table[_FAT] = rng.uniform(0.7, 0.95)
    table[_MUSCLE] = rng.uniform(0.18, 0.28)
    table[_LIVER] = rng.uniform(0.25, 0.35)
    table[_CORTEX] = rng.uniform(0.02, 0.05)
    table[_MARROW] = rng.uniform(0.1, 0.18)
    table[_DISC] = rng.uniform(0.35, 0.5)
    table[_MYO] = rng.uniform(0.15, 0.25)
    table[_LEFT_BLOOD] = left
    table[_RIGHT_BLOOD] = left * rng.uniform(0.85, 1.1)
    table[_LUNG_VESSEL] = rng.uniform(0.2, 0.4)
    return table


def _ct_image(rng: np.random.Generator, tissue: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    shape = tissue.shape
    image = _ct_intensities(rng)[tissue]
    lung = (tissue == _LUNG).astype(np.float32)
    image += lung * np.float32(rng.uniform(15.0, 35.0)) * _smooth_field(rng, shape, spacing, 6.0)
    right = (tissue == _RIGHT_BLOOD).astype(np.float32)  # unopacified inflow mixing in the right heart
    image += right * np.float32(rng.uniform(0.0, 50.0)) * _smooth_field(rng, shape, spacing, 15.0)
    soft = np.isin(tissue, (_MUSCLE, _LIVER, _FAT, _MYO)).astype(np.float32)
    image += soft * np.float32(8.0) * _smooth_field(rng, shape, spacing, 10.0)
    image = _blur(image, _partial_volume_sigma(spacing, 0.7))
    image += rng.standard_normal(shape, dtype=np.float32) * np.float32(rng.uniform(15.0, 30.0))
    return np.clip(image, -1024.0, 3071.0).astype(np.float32)


def _mr_image(rng: np.random.Generator, tissue: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    shape = tissue.shape
    image = _mr_intensities(rng)[tissue]
    image *= 1.0 + np.float32(0.06) * _smooth_field(rng, shape, spacing, 10.0)
    image = _blur(image, _partial_volume_sigma(spacing, 0.9))
    bias = np.exp(np.float32(rng.uniform(0.1, 0.2)) * _smooth_field(rng, shape, spacing, 80.0))
    scale = np.float32(rng.uniform(200.0, 2000.0))
    image *= bias * scale
    return _rician(image, float(scale) * rng.uniform(0.02, 0.045), rng).astype(np.float32)


def heart_phantom(
    modality: str = "ct",
    shape: Sequence[int] = (96, 96, 96),
    spacing: Sequence[float] = (1.5, 1.5, 1.5),
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MM-WHS-like whole-heart volume: (image float32, label int16 with MM-WHS codes, RAS affine), all (X, Y, Z).

    The anatomy is defined in millimetres (the default 96^3 at 1.5 mm holds the whole heart with a margin); use a
    proportionally larger ``spacing`` for smaller shapes, e.g. (64, 64, 64) at 2.25 mm. ``modality`` "ct" gives
    Hounsfield units, "mr" bright-blood MRI in arbitrary units. Every case holds all 7 structures.
    """
    modality = _checked_choice(modality, tuple(_HEART_MODALITY_PREFIX), "modality").lower()
    shape = _checked_shape(shape, _MIN_HEART_SIZE)
    spacing = _checked_spacing(spacing)
    rng = np.random.default_rng(seed)

    scale = float(rng.uniform(0.85, 1.15))
    anatomy = _heart_anatomy(rng, scale)
    pose = _heart_pose(rng, anatomy, scale, shape, spacing)
    warp = _smooth_field(rng, shape, spacing, 45.0, channels=3) * np.float32(rng.uniform(2.0, 4.0))
    coords = _posed_coords(shape, spacing, pose, warp)
    sdfs = {name: _evaluate(structure, coords, pose, spacing, 15.0) for name, structure in anatomy.items()}
    label = _heart_labels(sdfs)
    heart_distance = np.minimum.reduce(list(sdfs.values()))
    tissue = _chest_tissues(rng, shape, spacing, heart_distance, label)
    image = _ct_image(rng, tissue, spacing) if modality == "ct" else _mr_image(rng, tissue, spacing)
    return image, label, _ras_affine(shape, spacing)


def write_heart_phantoms(
    out_dir: str,
    num_cases: int = 12,
    modality: str = "ct",
    shape: Sequence[int] = (96, 96, 96),
    spacing: Sequence[float] = (1.5, 1.5, 1.5),
    seed: int = 0,
    split: str = "train",
    first_id: int = 1001,
    with_labels: bool = True,
) -> list[dict[str, str]]:
    """Write ``num_cases`` heart phantoms with MM-WHS file names; case ``i`` uses ``seed + i``.

    Files are ``{prefix}_{split}_{id}_image.nii.gz`` / ``..._label.nii.gz`` (prefix "ct" or "mr"), as in the
    challenge release, so datalist code written for MM-WHS reads them unchanged. Returns the datalist entries.
    """
    modality = _checked_choice(modality, tuple(_HEART_MODALITY_PREFIX), "modality").lower()
    num_cases = _checked_num_cases(num_cases)
    shape = _checked_shape(shape, _MIN_HEART_SIZE)
    spacing = _checked_spacing(spacing)
    if not isinstance(split, str) or not split or not split.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"split must be a non-empty alphanumeric name such as 'train' or 'test', got {split!r}")
    if isinstance(first_id, bool) or int(first_id) != first_id or first_id < 0:
        raise ValueError(f"first_id must be a non-negative integer, got {first_id!r}")
    os.makedirs(out_dir, exist_ok=True)
    prefix = _HEART_MODALITY_PREFIX[modality]
    entries = []
    for i in range(num_cases):
        image, label, affine = heart_phantom(modality, shape, spacing, seed + i)
        stem = os.path.join(out_dir, f"{prefix}_{split}_{int(first_id) + i}")
        entry = {"image": f"{stem}_image.nii.gz"}
        _save_nifti(image, affine, entry["image"], np.float32)
        if with_labels:
            entry["label"] = f"{stem}_label.nii.gz"
            _save_nifti(label, affine, entry["label"], np.int16)
        entries.append(entry)
    return entries


# ----------------------------------------------------------------------------------------------------------------
# curved tubes (hippocampus, ventricles)
# ----------------------------------------------------------------------------------------------------------------


def _curved_tube(
    q: _Coords,
    points: np.ndarray,
    side_radii: np.ndarray,
    normal_radii: np.ndarray,
    side_axis: Sequence[float],
) -> tuple[np.ndarray, np.ndarray]:
    """Elongated shape swept along a polyline with an elliptic cross-section whose radii vary along it.

    ``side_radii`` are measured along ``side_axis`` (made perpendicular to the local direction), ``normal_radii``
    along the third direction; the ends are capped by half-ellipsoids. Returns the approximate signed distance
    (mm) and the curve parameter (0 at the first point, 1 at the last) of the nearest segment, which is what
    splits a structure into parts along its long axis.
    """
    n_seg = len(points) - 1
    best = None
    best_t = None
    for i in range(n_seg):
        a, b = points[i], points[i + 1]
        seg = b - a
        length = float(np.linalg.norm(seg))
        tangent = seg / length
        side = np.asarray(side_axis, dtype=np.float64)
        side = _unit(side - np.dot(side, tangent) * tangent)
        normal = np.cross(tangent, side)
        d = [q[k] - np.float32(a[k]) for k in range(3)]
        along = d[0] * np.float32(tangent[0]) + d[1] * np.float32(tangent[1]) + d[2] * np.float32(tangent[2])
        t = np.clip(along / np.float32(length), 0.0, 1.0)
        beyond = along - t * np.float32(length)  # non-zero only past the ends
        e_side = d[0] * np.float32(side[0]) + d[1] * np.float32(side[1]) + d[2] * np.float32(side[2])
        e_norm = d[0] * np.float32(normal[0]) + d[1] * np.float32(normal[1]) + d[2] * np.float32(normal[2])
        r_side = np.float32(side_radii[i]) + t * np.float32(side_radii[i + 1] - side_radii[i])
        r_norm = np.float32(normal_radii[i]) + t * np.float32(normal_radii[i + 1] - normal_radii[i])
        r_end = np.minimum(r_side, r_norm)
        n1, n2, n3 = e_side / r_side, e_norm / r_norm, beyond / r_end
        rho = np.sqrt(n1 * n1 + n2 * n2 + n3 * n3)
        grad = np.sqrt((n1 / r_side) ** 2 + (n2 / r_norm) ** 2 + (n3 / r_end) ** 2) + np.float32(1e-9)
        sdf = (rho - 1.0) * rho / grad
        t_global = (np.float32(i) + t) / np.float32(n_seg)
        if best is None:
            best, best_t = sdf, t_global
        else:
            closer = sdf < best
            best = np.where(closer, sdf, best)
            best_t = np.where(closer, t_global, best_t)
    return best, best_t


# ----------------------------------------------------------------------------------------------------------------
# hippocampus (MSD Task04-like crop)
# ----------------------------------------------------------------------------------------------------------------

# T1 tissue classes of the medial temporal lobe crop.
_H_CSF, _H_GM, _H_WM, _H_HIPPO = range(4)


def _hippocampus_curve(rng: np.random.Generator, medial: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre line (anterior head -> posterior tail, rising and bending medially) and cross-section radii."""
    t = np.linspace(0.0, 1.0, 9)
    length = rng.uniform(31.0, 36.0)
    rise = rng.uniform(10.0, 16.0)
    bend = rng.uniform(2.0, 6.0)
    y = 0.5 * length - length * t - 1.5
    z = -6.0 + rise * t**2 + rng.normal(0.0, 0.6, t.size)
    x = medial * bend * t**2 + rng.normal(0.0, 0.4, t.size)
    points = np.stack([x, y, z], axis=1)
    head_w, head_h = rng.uniform(6.0, 7.5), rng.uniform(4.2, 5.2)
    body_w, body_h = rng.uniform(4.6, 5.6), rng.uniform(3.6, 4.4)
    tail_w, tail_h = rng.uniform(2.6, 3.4), rng.uniform(2.2, 2.8)
    profile = np.interp(t, [0.0, 0.15, 0.35, 0.55, 1.0], [0.5, 1.0, 0.9, 0.0, -0.2])
    profile = np.clip(profile, 0.0, 1.0)
    tail = np.clip((t - 0.55) / 0.45, 0.0, 1.0)
    width = profile * head_w + (1 - profile) * (body_w * (1 - tail) + tail_w * tail)
    height = profile * head_h + (1 - profile) * (body_h * (1 - tail) + tail_h * tail)
    return points, width, height


def hippocampus_phantom(
    shape: Sequence[int] = (36, 50, 36),
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MSD Task04-like T1 crop around one hippocampus: (image float32, label uint8, RAS affine).

    Labels: 0 background, 1 anterior (head, thicker, towards +Y), 2 posterior (body and tail, thinner, curving
    up towards +Z). Grey-matter-like hippocampus with brighter white matter (alveus, parahippocampal and temporal
    white matter) and dark CSF (temporal horn, ambient cistern) around it, so its outline is mostly visible.
    """
    shape = _checked_shape(shape, _MIN_HIPPOCAMPUS_SIZE)
    spacing = _checked_spacing(spacing)
    rng = np.random.default_rng(seed)
    medial = float(rng.choice([-1.0, 1.0]))  # left or right hippocampus: the medial side is +X or -X

    points, width, height = _hippocampus_curve(rng, medial)
    split = rng.uniform(0.32, 0.42)
    pose = _Pose(_random_rotation(rng, 10.0), rng.uniform(-2.5, 2.5, 3), float(rng.uniform(0.88, 1.12)))
    warp = _smooth_field(rng, shape, spacing, 12.0, channels=3) * np.float32(rng.uniform(0.8, 1.6))
    q = _posed_coords(shape, spacing, pose, warp)
    side = (1.0, 0.0, 0.0)
    hippo, t_along = _curved_tube(q, points, width, height, side)
    hippo *= np.float32(pose.scale)

    # Neighbours, offset from the same centre line: temporal horn above-lateral, alveus on top, white matter below.
    up = np.array([0.0, 0.0, 1.0])
    lateral = np.array([-medial, 0.0, 0.0])
    horn_points = points + (height[:, None] + 1.6) * up + 0.35 * width[:, None] * lateral
    horn_r = rng.uniform(1.2, 2.4) * np.ones(len(points))
    horn, horn_t = _curved_tube(q, horn_points, horn_r * 2.2, horn_r, side)
    horn = np.where(horn_t < rng.uniform(0.7, 0.95), horn, _FAR)
    below_points = points - (height[:, None] + 2.2) * up
    below, _ = _curved_tube(q, below_points, width * 1.2, np.full(len(points), 1.6), side)

    x, y, z = q
    gyri = _smooth_field(rng, shape, spacing, 7.0)
    tissue = np.full(shape, _H_GM, dtype=np.uint8)
    lateral_bias = np.float32(-medial) * x / np.float32(8.0)  # more white matter laterally (temporal stem)
    tissue[gyri + lateral_bias > rng.uniform(0.0, 0.6)] = _H_WM
    tissue[below < 0] = _H_WM
    cistern = medial * x - (width.max() + rng.uniform(2.0, 6.0)) + 2.5 * _smooth_field(rng, shape, spacing, 10.0)
    tissue[(cistern > 0) & (z < 6.0) & (z > -16.0)] = _H_CSF
    centre_z = np.interp(t_along, np.linspace(0.0, 1.0, len(points)), points[:, 2])
    alveus = (hippo > 0) & (hippo < rng.uniform(0.8, 1.5)) & (z > centre_z)  # white-matter cap on top
    tissue[alveus] = _H_WM
    tissue[horn < 0] = _H_CSF
    label = np.zeros(shape, dtype=np.uint8)
    inside = hippo < 0
    tissue[inside] = _H_HIPPO
    label[inside & (t_along < split)] = HIPPOCAMPUS_LABELS["anterior"]
    label[inside & (t_along >= split)] = HIPPOCAMPUS_LABELS["posterior"]

    table = np.zeros(4, dtype=np.float32)
    table[_H_WM] = 1.0
    table[_H_GM] = rng.uniform(0.55, 0.68)
    table[_H_HIPPO] = table[_H_GM] * rng.uniform(0.95, 1.08)
    table[_H_CSF] = rng.uniform(0.1, 0.25)
    image = table[tissue] * (1.0 + np.float32(0.05) * _smooth_field(rng, shape, spacing, 4.0))
    image = _blur(image, _partial_volume_sigma(spacing, 0.6))
    scale = np.float32(rng.uniform(60.0, 900.0))
    image *= np.exp(np.float32(rng.uniform(0.05, 0.15)) * _smooth_field(rng, shape, spacing, 40.0)) * scale
    image = _rician(image, float(scale) * rng.uniform(0.025, 0.06), rng)
    return image.astype(np.float32), label, _ras_affine(shape, spacing)


def write_hippocampus_phantoms(
    out_dir: str,
    num_cases: int = 20,
    shape: Sequence[int] = (36, 50, 36),
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    seed: int = 0,
) -> str:
    """Write a Medical Segmentation Decathlon Task04 layout (dataset.json, imagesTr/, labelsTr/); returns the json.

    Case ``i`` (``hippocampus_{i+1:03d}``) uses ``seed + i``. The dataset.json has the keys of the real task, so
    ``monai.data.load_decathlon_datalist`` and every MSD reader work unchanged.
    """
    num_cases = _checked_num_cases(num_cases)
    shape = _checked_shape(shape, _MIN_HIPPOCAMPUS_SIZE)
    spacing = _checked_spacing(spacing)
    for sub in ("imagesTr", "labelsTr"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    training = []
    for i in range(num_cases):
        image, label, affine = hippocampus_phantom(shape, spacing, seed + i)
        name = f"hippocampus_{i + 1:03d}.nii.gz"
        _save_nifti(image, affine, os.path.join(out_dir, "imagesTr", name), np.float32)
        _save_nifti(label, affine, os.path.join(out_dir, "labelsTr", name), np.uint8)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    dataset = {
        "name": "Hippocampus",
        "description": "Synthetic hippocampus phantoms in the Medical Segmentation Decathlon Task04 layout",
        "reference": "xlstm_monai.data.phantoms (synthetic, no patient data)",
        "licence": "Apache-2.0",
        "release": "1.0",
        "tensorImageSize": "3D",
        "modality": {"0": "MRI"},
        "labels": {"0": "background", "1": "Anterior", "2": "Posterior"},
        "numTraining": num_cases,
        "numTest": 0,
        "training": training,
        "test": [],
    }
    path = os.path.join(out_dir, "dataset.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(dataset, handle, indent=1)
    return path


# ----------------------------------------------------------------------------------------------------------------
# brain (IXI-like 2 mm T1 head, CN / AD)
# ----------------------------------------------------------------------------------------------------------------

_B_BG, _B_SKIN, _B_MUSCLE, _B_BONE, _B_DIPLOE, _B_CSF, _B_GM, _B_WM, _B_DEEP_GM, _B_VITREOUS, _B_STEM = range(11)
_HEAD_RADII = np.array([70.0, 86.0, 74.0])
_HEAD_CENTRE = np.array([0.0, 0.0, -4.0])


@dataclass
class _BrainCase:
    """Per-subject anatomy parameters; the AD ones carry the class signal, the rest is within-class variation."""

    head_scale: float
    ventricle_volume: float  # relative lateral-ventricle volume (1 = typical healthy elderly)
    hippocampus_width: float  # relative hippocampal cross-section radius
    sulcus_mm: float  # half-width of sulcal CSF
    csf_mm: float  # subarachnoid CSF between skull and brain
    cortex_mm: float


def _brain_case(rng: np.random.Generator, diagnosis: str, sex: str, age: float) -> _BrainCase:
    ad = diagnosis == "AD"
    ageing = (age - 72.0) / 10.0
    head = rng.normal(1.03 if sex == "M" else 0.96, 0.025)
    ventricles = math.exp(rng.normal(0.0, 0.15) + 0.1 * ageing) * (rng.uniform(2.5, 4.0) if ad else 1.0)
    return _BrainCase(
        head_scale=float(np.clip(head, 0.9, 1.08)),
        ventricle_volume=ventricles,
        hippocampus_width=float(rng.uniform(0.74, 0.86) if ad else rng.uniform(0.95, 1.08)),
        sulcus_mm=float(rng.uniform(0.4, 0.8) + 0.15 * ageing + (rng.uniform(1.0, 1.8) if ad else 0.0)),
        csf_mm=float(rng.uniform(1.2, 2.2) + 0.3 * ageing + (rng.uniform(1.0, 2.0) if ad else 0.0)),
        cortex_mm=float(rng.uniform(3.0, 3.6) - (rng.uniform(0.4, 0.8) if ad else 0.0)),
    )


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _ventricle_tubes(case: _BrainCase, side: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Lateral ventricle of one hemisphere as tubes: frontal horn + body + atrium + temporal horn, occipital horn.

    Cross-section radii grow with the square root of the relative volume; the centre line moves outwards as the
    ventricle widens, so the septum between the two ventricles stays thin, as in atrophy.
    """
    g = math.sqrt(case.ventricle_volume)
    width = np.array([3.8, 4.6, 4.8, 5.6, 1.8, 1.5, 1.2]) * g
    height = np.array([7.0, 7.5, 6.5, 7.0, 2.2, 1.9, 1.5]) * g
    centre_x = np.array([1.5 + width[0], 1.5 + width[1], 1.5 + width[2], 14.0 + 0.5 * width[3], 27.0, 30.0, 31.0])
    y = np.array([30.0, 14.0, -8.0, -28.0, -20.0, -6.0, 4.0])
    z = np.array([8.0, 13.0, 16.0, 8.0, -8.0, -14.0, -17.0])
    main = np.stack([side * centre_x, y, z], axis=1)
    occipital = np.stack([main[3], np.array([side * 12.0, -46.0, 4.0])])
    return [
        (main, width, height),
        (occipital, np.array([width[3], 1.8 * g]), np.array([height[3], 2.2 * g])),
    ]


def _hippocampus_tube(case: _BrainCase, side: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    points = np.array([[26.0, 2.0, -25.0], [24.0, -12.0, -21.0], [21.0, -26.0, -13.0], [17.0, -35.0, -3.0]])
    points[:, 0] *= side
    width = np.array([7.0, 5.2, 4.0, 2.6]) * case.hippocampus_width
    height = np.array([5.2, 4.2, 3.3, 2.2]) * case.hippocampus_width
    return points, width, height


def _tube_structure(
    points: np.ndarray, width: np.ndarray, height: np.ndarray, side_axis: Sequence[float]
) -> _Structure:
    lo, hi = points.min(axis=0), points.max(axis=0)
    centre = 0.5 * (lo + hi)
    radius = float(np.linalg.norm(hi - centre) + max(width.max(), height.max()))
    return _Structure(lambda q: _curved_tube(q, points, width, height, side_axis)[0], centre, radius)


def _ellipsoid_structure(
    centre: Sequence[float], radii: Sequence[float], frame: np.ndarray | None = None
) -> _Structure:
    centre = np.asarray(centre, dtype=np.float64)
    frame = np.eye(3) if frame is None else frame
    return _Structure(lambda q: _ellipsoid_sdf(q, centre, frame, radii), centre, float(max(radii)))


def _brain_tissues(
    rng: np.random.Generator, case: _BrainCase, shape: Sequence[int], spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Tissue classes of the head and its signed distance (world mm), built from implicit shapes in a head frame."""
    pose = _Pose(
        _rotation_matrix([rng.uniform(-8.0, 8.0), rng.uniform(-4.0, 4.0), rng.uniform(-5.0, 5.0)]),
        rng.uniform(-5.0, 5.0, 3),
        case.head_scale,
    )
    warp = _smooth_field(rng, shape, spacing, 40.0, channels=3) * np.float32(rng.uniform(1.5, 3.0))
    q = _posed_coords(shape, spacing, pose, warp)
    x, y, z = q
    s = np.float32(pose.scale)

    def world(structure: _Structure) -> np.ndarray:
        return _evaluate(structure, q, pose, spacing, 12.0)

    head = _ellipsoid_sdf(q, _HEAD_CENTRE, np.eye(3), _HEAD_RADII) * s
    scalp, skull = rng.uniform(5.0, 8.0), rng.uniform(5.0, 8.0)
    inner = scalp + skull
    tissue = np.full(tuple(shape), _B_BG, dtype=np.uint8)
    tissue[head < 0] = _B_SKIN
    tissue[head < -scalp] = _B_BONE
    tissue[(head < -scalp - 0.3 * skull) & (head > -inner + 0.3 * skull)] = _B_DIPLOE
    tissue[head < -inner] = _B_CSF

    # Cerebrum: inside the skull above an uneven floor (lower under the temporal lobes, rising over the orbits).
    floor = -24.0 - 18.0 * _smoothstep(np.abs(x), 14.0, 40.0) + 0.35 * np.maximum(y - 25.0, 0.0)
    floor = floor + 10.0 * _smoothstep(-y, 30.0, 45.0) * (1.0 - _smoothstep(np.abs(x), 10.0, 30.0))
    floor = floor + 3.0 * _smooth_field(rng, shape, spacing, 20.0)
    surface = head + np.float32(inner + case.csf_mm) + np.float32(1.0) * _smooth_field(rng, shape, spacing, 14.0)
    outer_depth = -np.maximum(surface, (floor - z) * s)  # mm below the cerebral surface
    cerebrum = outer_depth > 0
    base = (head < -inner) & (z < floor - 3.0)  # skull base: soft tissue with bone, air cells and fat
    base_texture = _smooth_field(rng, shape, spacing, 10.0)
    tissue[base] = _B_MUSCLE
    tissue[base & (base_texture < -0.9)] = _B_BONE
    tissue[base & (base_texture > 1.0)] = _B_SKIN

    # The medial surfaces face each other across the interhemispheric fissure, which reaches down to the corpus
    # callosum (and to the floor in front of and behind it); they fold like the outer surface.
    callosum_top = 16.0 + 0.004 * y * y - 80.0 * _smoothstep(np.abs(y), 32.0, 44.0)
    medial_depth = np.where(z > callosum_top, np.abs(x) * s - np.float32(case.sulcus_mm + 0.6), np.float32(_FAR))
    depth = np.minimum(outer_depth, medial_depth)
    folds = _smooth_field(rng, shape, spacing, 9.0)
    gx, gy, gz = np.gradient(folds, *spacing)
    sulcus_distance = np.abs(folds) / (np.sqrt(gx * gx + gy * gy + gz * gz) + np.float32(1e-3))
    near_sulcus = depth < np.float32(rng.uniform(10.0, 16.0))
    tissue[cerebrum] = _B_WM
    grey = (depth < case.cortex_mm) | (near_sulcus & (sulcus_distance < case.sulcus_mm + case.cortex_mm))
    tissue[cerebrum & grey] = _B_GM
    tissue[cerebrum & ((depth < 0) | (near_sulcus & (sulcus_distance < case.sulcus_mm)))] = _B_CSF

    # Cerebellum (grey with a branching white core) and brainstem.
    cerebellum = world(_ellipsoid_structure([0.0, -52.0, -36.0], [46.0, 28.0, 20.0]))
    cerebellum = np.maximum(cerebellum, head + np.float32(inner + case.csf_mm))
    tissue[cerebellum < 0] = _B_GM
    arbor = _smooth_field(rng, shape, spacing, 6.0)
    tissue[(cerebellum < -5.0) & (np.abs(arbor) < 0.35)] = _B_WM
    stem = world(
        _tube_structure(
            np.array([[0.0, -14.0, -4.0], [0.0, -22.0, -30.0], [0.0, -28.0, -90.0]]),
            np.array([11.0, 9.5, 8.0]),
            np.array([10.0, 8.5, 8.0]),
            (1.0, 0.0, 0.0),
        )
    )
    tissue[stem < 0] = _B_STEM

    # Deep grey matter, hippocampi, then ventricles (which carve into them as they enlarge).
    for side in (-1.0, 1.0):
        for centre, radii in (([10.0, -14.0, 4.0], [8.0, 13.0, 8.0]), ([21.0, 6.0, 2.0], [6.0, 14.0, 9.0])):
            deep = world(_ellipsoid_structure([side * centre[0], centre[1], centre[2]], radii))
            tissue[(deep < 0) & (tissue == _B_WM)] = _B_DEEP_GM
        hippo = world(_tube_structure(*_hippocampus_tube(case, side), (1.0, 0.0, 0.0)))
        tissue[hippo < 0] = _B_GM
        for points, width, height in _ventricle_tubes(case, side):
            ventricle = world(_tube_structure(points, width, height, (1.0, 0.0, 0.0)))
            tissue[ventricle < 0] = _B_CSF
    third = world(
        _tube_structure(
            np.array([[0.0, 6.0, 2.0], [0.0, -16.0, 0.0]]),
            np.full(2, 1.0 * math.sqrt(case.ventricle_volume)),
            np.full(2, 6.0),
            (1.0, 0.0, 0.0),
        )
    )
    tissue[third < 0] = _B_CSF

    # Eyes in orbital fat, below the frontal lobes.
    for side in (-1.0, 1.0):
        orbit = world(_ellipsoid_structure([side * 32.0, 62.0, -32.0], [17.0, 17.0, 15.0]))
        tissue[(orbit < 0) & (head < -2.0)] = _B_SKIN
        eye = world(_ellipsoid_structure([side * 32.0, 64.0, -32.0], [11.5, 11.5, 11.5]))
        tissue[(eye < 0) & (head < -1.0)] = _B_VITREOUS
    return tissue, head


def _brain_intensities(rng: np.random.Generator) -> np.ndarray:
    """T1-weighted signal relative to white matter: fat bright, bone/CSF dark, grey matter mid."""
    table = np.zeros(11, dtype=np.float32)
    grey = rng.uniform(0.55, 0.68)
    table[_B_BG] = 0.0
    table[_B_SKIN] = rng.uniform(0.85, 1.2)
    table[_B_MUSCLE] = rng.uniform(0.45, 0.6)
    table[_B_BONE] = rng.uniform(0.04, 0.1)
    table[_B_DIPLOE] = rng.uniform(0.4, 0.65)
    table[_B_CSF] = rng.uniform(0.1, 0.22)
    table[_B_GM] = grey
    table[_B_WM] = 1.0
    table[_B_DEEP_GM] = grey + rng.uniform(0.06, 0.14)
    table[_B_VITREOUS] = rng.uniform(0.06, 0.14)
    table[_B_STEM] = rng.uniform(0.8, 0.92)
    return table


def brain_phantom(
    diagnosis: str = "CN",
    sex: str = "M",
    shape: Sequence[int] = (80, 96, 80),
    spacing: Sequence[float] = (2.0, 2.0, 2.0),
    seed: int = 0,
    age: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """IXI-like T1 head: (image float32, RAS affine); background is exactly 0 outside the head.

    ``diagnosis`` "AD" enlarges the ventricles (2.5-4x), thins the hippocampi and widens sulci and
    subarachnoid CSF relative to "CN"; head size (males larger on average), ventricle size, ageing, contrast,
    bias field, noise and pose vary within each class so the task is learnable but not trivial.
    ``age`` (years) defaults to a draw typical of the diagnosis.
    """
    diagnosis = _checked_choice(diagnosis, ("CN", "AD"), "diagnosis")
    sex = _checked_choice(sex, ("M", "F"), "sex")
    shape = _checked_shape(shape, _MIN_BRAIN_SIZE)
    spacing = _checked_spacing(spacing)
    rng = np.random.default_rng(seed)
    if age is None:
        age = _draw_age(rng, diagnosis)
    elif not (isinstance(age, (int, float)) and 0.0 < float(age) < 130.0):
        raise ValueError(f"age must be a number of years in (0, 130), got {age!r}")
    case = _brain_case(rng, diagnosis, sex, float(age))
    tissue, head = _brain_tissues(rng, case, shape, spacing)

    image = _brain_intensities(rng)[tissue]
    image *= 1.0 + np.float32(0.04) * _smooth_field(rng, shape, spacing, 8.0)
    image = _blur(image, _partial_volume_sigma(spacing, 0.8))
    scale = np.float32(rng.uniform(300.0, 1500.0))
    image *= np.exp(np.float32(rng.uniform(0.08, 0.2)) * _smooth_field(rng, shape, spacing, 90.0)) * scale
    image = _rician(image, float(scale) * rng.uniform(0.015, 0.035), rng)
    image[head > 1.0] = 0.0
    return image.astype(np.float32), _ras_affine(shape, spacing)


def _draw_age(rng: np.random.Generator, diagnosis: str) -> float:
    mean = 75.0 if diagnosis == "AD" else 71.0
    return float(np.round(np.clip(rng.normal(mean, 7.0), 55.0, 92.0), 1))


def write_brain_phantoms(
    out_dir: str,
    num_cases: int = 40,
    shape: Sequence[int] = (80, 96, 80),
    spacing: Sequence[float] = (2.0, 2.0, 2.0),
    seed: int = 0,
    ad_fraction: float = 0.5,
) -> str:
    """Write ``out_dir/images/SUBJ-0001_T1.nii.gz`` ... and ``out_dir/participants.csv``; returns the csv path.

    The csv has columns ID, Image (relative to ``out_dir``), Diagnosis (CN/AD), Sex (M/F) and Age. A fraction
    ``ad_fraction`` of the subjects is AD (rounded), in shuffled order, with both sexes in each class. Case
    ``i`` uses ``seed + i`` for its image; the demographics come from ``seed`` too, so the set is reproducible.
    """
    num_cases = _checked_num_cases(num_cases)
    shape = _checked_shape(shape, _MIN_BRAIN_SIZE)
    spacing = _checked_spacing(spacing)
    if isinstance(ad_fraction, bool) or not isinstance(ad_fraction, (int, float)) or not 0.0 <= ad_fraction <= 1.0:
        raise ValueError(f"ad_fraction must be a number in [0, 1], got {ad_fraction!r}")
    rng = np.random.default_rng([int(seed), 2024])
    n_ad = int(round(num_cases * ad_fraction))
    diagnoses = ["AD"] * n_ad + ["CN"] * (num_cases - n_ad)
    first_sex = rng.integers(2)
    sexes = [("M", "F")[(first_sex + k) % 2] for k in range(n_ad)]
    sexes += [("F", "M")[(first_sex + k) % 2] for k in range(num_cases - n_ad)]
    order = rng.permutation(num_cases)
    diagnoses = [diagnoses[k] for k in order]
    sexes = [sexes[k] for k in order]

    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    rows = []
    for i in range(num_cases):
        age = _draw_age(rng, diagnoses[i])
        image, affine = brain_phantom(diagnoses[i], sexes[i], shape, spacing, seed + i, age=age)
        subject = f"SUBJ-{i + 1:04d}"
        relative = f"images/{subject}_T1.nii.gz"
        _save_nifti(image, affine, os.path.join(out_dir, relative), np.float32)
        rows.append({"ID": subject, "Image": relative, "Diagnosis": diagnoses[i], "Sex": sexes[i], "Age": f"{age:.1f}"})
    path = os.path.join(out_dir, "participants.csv")
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["ID", "Image", "Diagnosis", "Sex", "Age"])
        writer.writeheader()
        writer.writerows(rows)
    return path


PHANTOM_KINDS = ("heart_ct", "heart_mr", "heart_ct_mr", "hippocampus", "brain")
MARKER = "PHANTOMS.json"  # written into a generated folder: what is in it, and that it is not a user's data


def write_phantoms(
    kind: str,
    out_dir: str,
    num_cases: int,
    shape: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    seed: int = 0,
) -> None:
    """A bundle's default data: ``num_cases`` phantoms of ``kind`` in its real layout, and the :data:`MARKER`."""
    if kind not in PHANTOM_KINDS:
        raise ValueError(f"unknown phantom kind {kind!r}; choose from {PHANTOM_KINDS}")
    if kind.startswith("heart"):
        modalities = {"heart_ct": ["ct"], "heart_mr": ["mr"], "heart_ct_mr": ["ct", "mr"]}[kind]
        for modality in modalities:
            write_heart_phantoms(out_dir, num_cases, modality, shape or (96, 96, 96), spacing or (1.5,) * 3, seed)
    elif kind == "hippocampus":
        write_hippocampus_phantoms(out_dir, num_cases, shape or (36, 50, 36), spacing or (1.0,) * 3, seed)
    else:
        write_brain_phantoms(out_dir, num_cases, shape or (80, 96, 80), spacing or (2.0,) * 3, seed)
    with open(os.path.join(out_dir, MARKER), "w") as handle:
        json.dump(
            {
                "generated_by": "xlstm_monai",
                "kind": kind,
                "num_cases": num_cases,
                "shape": shape,
                "spacing": spacing,
                "seed": seed,
            },
            handle,
            indent=2,
        )
