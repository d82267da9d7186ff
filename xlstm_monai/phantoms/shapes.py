"""Implicit shapes of the phantoms (approximate signed distances in mm, negative inside), rotations and poses."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from .imaging import axis_mm

FAR = np.float32(1.0e3)  # signed distance used outside a structure's bounding box (mm)

Coords = tuple[np.ndarray, np.ndarray, np.ndarray]


def rotation_matrix(angles_deg: Sequence[float]) -> np.ndarray:
    """Rotation about x, then y, then z (fixed axes), angles in degrees."""
    return Rotation.from_euler("xyz", angles_deg, degrees=True).as_matrix()


def random_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    return rotation_matrix(rng.uniform(-max_deg, max_deg, 3))


def unit_vector(vector: Sequence[float]) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64)
    return vector / np.linalg.norm(vector)


def orthonormal_frame(primary: Sequence[float], secondary: Sequence[float]) -> np.ndarray:
    """Orthonormal frame (columns) whose first axis is ``primary`` and second lies towards ``secondary``."""
    u = unit_vector(primary)
    v = np.asarray(secondary, dtype=np.float64)
    v = unit_vector(v - np.dot(v, u) * u)
    return np.stack([u, v, np.cross(u, v)], axis=1)


def ellipsoid_sdf(q: Coords, center: np.ndarray, frame: np.ndarray, radii: Sequence[float]) -> np.ndarray:
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


def tube_sdf(q: Coords, points: np.ndarray, radii: np.ndarray) -> np.ndarray:
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


def plane_sdf(q: Coords, point: np.ndarray, outward: np.ndarray) -> np.ndarray:
    return sum((q[i] - np.float32(point[i])) * np.float32(outward[i]) for i in range(3))


@dataclass
class Structure:
    """One implicit shape: a signed-distance function and a bounding sphere (centre, radius) in the shape frame."""

    sdf: Callable[[Coords], np.ndarray]
    center: np.ndarray
    radius: float


@dataclass
class Pose:
    """Places a shape frame in the world: p_world = rotation @ (scale * q) + translation, plus a smooth warp."""

    rotation: np.ndarray
    translation: np.ndarray
    scale: float


def posed_coords(shape: Sequence[int], spacing: Sequence[float], pose: Pose, warp_mm: np.ndarray | None) -> Coords:
    """Shape-frame coordinates of every voxel: inverse pose, then a smooth displacement for shape variety."""
    axes = axis_mm(shape, spacing)
    shifted = [axes[i] - np.float32(pose.translation[i]) for i in range(3)]
    inv = (pose.rotation.T / pose.scale).astype(np.float32)
    coords = []
    for i in range(3):
        c = shifted[0] * inv[i, 0] + shifted[1] * inv[i, 1] + shifted[2] * inv[i, 2]
        if warp_mm is not None:
            c = c + warp_mm[i] / np.float32(pose.scale)
        coords.append(np.ascontiguousarray(c, dtype=np.float32))
    return coords[0], coords[1], coords[2]


def evaluate_structure(
    structure: Structure,
    coords: Coords,
    pose: Pose,
    spacing: Sequence[float],
    margin_mm: float,
) -> np.ndarray:
    """World-mm signed distance of a structure, computed only inside its bounding box (``FAR`` elsewhere)."""
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
            return np.full(shape, FAR, dtype=np.float32)
        slices.append(slice(lo, hi))
    box = tuple(slices)
    out = np.full(shape, FAR, dtype=np.float32)
    out[box] = structure.sdf((coords[0][box], coords[1][box], coords[2][box])) * np.float32(pose.scale)
    return out


def curved_tube(
    q: Coords,
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
        side = unit_vector(side - np.dot(side, tangent) * tangent)
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
