"""IXI-like 2 mm T1 head whose anatomy carries a CN / AD class signal, with a participants.csv table."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .imaging import (
    blur,
    checked_choice,
    checked_num_cases,
    checked_shape,
    checked_spacing,
    partial_volume_sigma,
    ras_affine,
    rician,
    save_nifti,
    smooth_field,
)
from .shapes import FAR, Pose, Structure, curved_tube, ellipsoid_sdf, evaluate_structure, posed_coords, rotation_matrix

_MIN_BRAIN_SIZE = 24


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


def _tube_structure(points: np.ndarray, width: np.ndarray, height: np.ndarray, side_axis: Sequence[float]) -> Structure:
    lo, hi = points.min(axis=0), points.max(axis=0)
    centre = 0.5 * (lo + hi)
    radius = float(np.linalg.norm(hi - centre) + max(width.max(), height.max()))
    return Structure(lambda q: curved_tube(q, points, width, height, side_axis)[0], centre, radius)


def _ellipsoid_structure(centre: Sequence[float], radii: Sequence[float], frame: np.ndarray | None = None) -> Structure:
    centre = np.asarray(centre, dtype=np.float64)
    frame = np.eye(3) if frame is None else frame
    return Structure(lambda q: ellipsoid_sdf(q, centre, frame, radii), centre, float(max(radii)))


def _brain_tissues(
    rng: np.random.Generator, case: _BrainCase, shape: Sequence[int], spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Tissue classes of the head and its signed distance (world mm), built from implicit shapes in a head frame."""
    pose = Pose(
        rotation_matrix([rng.uniform(-8.0, 8.0), rng.uniform(-4.0, 4.0), rng.uniform(-5.0, 5.0)]),
        rng.uniform(-5.0, 5.0, 3),
        case.head_scale,
    )
    warp = smooth_field(rng, shape, spacing, 40.0, channels=3) * np.float32(rng.uniform(1.5, 3.0))
    q = posed_coords(shape, spacing, pose, warp)
    x, y, z = q
    s = np.float32(pose.scale)

    def world(structure: Structure) -> np.ndarray:
        return evaluate_structure(structure, q, pose, spacing, 12.0)

    head = ellipsoid_sdf(q, _HEAD_CENTRE, np.eye(3), _HEAD_RADII) * s
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
    floor = floor + 3.0 * smooth_field(rng, shape, spacing, 20.0)
    surface = head + np.float32(inner + case.csf_mm) + np.float32(1.0) * smooth_field(rng, shape, spacing, 14.0)
    outer_depth = -np.maximum(surface, (floor - z) * s)  # mm below the cerebral surface
    cerebrum = outer_depth > 0
    base = (head < -inner) & (z < floor - 3.0)  # skull base: soft tissue with bone, air cells and fat
    base_texture = smooth_field(rng, shape, spacing, 10.0)
    tissue[base] = _B_MUSCLE
    tissue[base & (base_texture < -0.9)] = _B_BONE
    tissue[base & (base_texture > 1.0)] = _B_SKIN

    # The medial surfaces face each other across the interhemispheric fissure, which reaches down to the corpus
    # callosum (and to the floor in front of and behind it); they fold like the outer surface.
    callosum_top = 16.0 + 0.004 * y * y - 80.0 * _smoothstep(np.abs(y), 32.0, 44.0)
    medial_depth = np.where(z > callosum_top, np.abs(x) * s - np.float32(case.sulcus_mm + 0.6), np.float32(FAR))
    depth = np.minimum(outer_depth, medial_depth)
    folds = smooth_field(rng, shape, spacing, 9.0)
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
    arbor = smooth_field(rng, shape, spacing, 6.0)
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
    diagnosis = checked_choice(diagnosis, ("CN", "AD"), "diagnosis")
    sex = checked_choice(sex, ("M", "F"), "sex")
    shape = checked_shape(shape, _MIN_BRAIN_SIZE)
    spacing = checked_spacing(spacing)
    rng = np.random.default_rng(seed)
    if age is None:
        age = _draw_age(rng, diagnosis)
    elif not (isinstance(age, (int, float)) and 0.0 < float(age) < 130.0):
        raise ValueError(f"age must be a number of years in (0, 130), got {age!r}")
    case = _brain_case(rng, diagnosis, sex, float(age))
    tissue, head = _brain_tissues(rng, case, shape, spacing)

    image = _brain_intensities(rng)[tissue]
    image *= 1.0 + np.float32(0.04) * smooth_field(rng, shape, spacing, 8.0)
    image = blur(image, partial_volume_sigma(spacing, 0.8))
    scale = np.float32(rng.uniform(300.0, 1500.0))
    image *= np.exp(np.float32(rng.uniform(0.08, 0.2)) * smooth_field(rng, shape, spacing, 90.0)) * scale
    image = rician(image, float(scale) * rng.uniform(0.015, 0.035), rng)
    image[head > 1.0] = 0.0
    return image.astype(np.float32), ras_affine(shape, spacing)


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
    num_cases = checked_num_cases(num_cases)
    shape = checked_shape(shape, _MIN_BRAIN_SIZE)
    spacing = checked_spacing(spacing)
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
        save_nifti(image, affine, os.path.join(out_dir, relative), np.float32)
        rows.append({"ID": subject, "Image": relative, "Diagnosis": diagnoses[i], "Sex": sexes[i], "Age": f"{age:.1f}"})
    path = os.path.join(out_dir, "participants.csv")
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["ID", "Image", "Diagnosis", "Sex", "Age"])
        writer.writeheader()
        writer.writerows(rows)
    return path
