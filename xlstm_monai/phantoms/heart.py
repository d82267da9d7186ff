"""MM-WHS-like whole-heart CT (Hounsfield units) or bright-blood MRI: 7 labelled structures in a torso."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from xlstm_monai.data.label_codes import MMWHS_LABELS

from .imaging import (
    axis_mm,
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
from .shapes import (
    Coords,
    Pose,
    Structure,
    ellipsoid_sdf,
    evaluate_structure,
    orthonormal_frame,
    plane_sdf,
    posed_coords,
    random_rotation,
    tube_sdf,
    unit_vector,
)

_HEART_MODALITY_PREFIX = {"ct": "ct", "mr": "mr"}
_MIN_HEART_SIZE = 24


# Heart frame: RAS millimetres, origin near the centre of the heart's bounding box (before the per-case pose).
_HEART_APEX_DIR = unit_vector([-0.62, 0.55, -0.56])  # left, anterior, inferior
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


def _heart_anatomy(rng: np.random.Generator, scale: float) -> dict[str, Structure]:
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
    frame = orthonormal_frame(_HEART_APEX_DIR + rng.normal(0.0, 0.06, 3), _HEART_SEPTAL_DIR)
    u = frame[:, 0]

    # Left ventricle: ellipsoid cut by the mitral/aortic (base) plane, apex towards left-anterior-inferior.
    a, b, c = 40.0 * k * size(), 24.0 * k * size(), 22.0 * k * size()
    thickness = float(rng.uniform(9.5, 12.5)) / scale
    mitral = point(0.0, -10.0, 5.0) + pos()
    lv_center = mitral + 0.78 * a * u
    lv_radii = (a, b, c)
    epi_radii = (a + 0.8 * thickness, b + thickness, c + thickness)

    def lv_sdf(q: Coords) -> np.ndarray:
        return np.maximum(ellipsoid_sdf(q, lv_center, frame, lv_radii), plane_sdf(q, mitral, -u))

    def myo_sdf(q: Coords) -> np.ndarray:
        epi = ellipsoid_sdf(q, lv_center, frame, epi_radii)
        cavity = ellipsoid_sdf(q, lv_center, frame, lv_radii)
        return np.maximum(np.maximum(epi, -cavity), plane_sdf(q, mitral, -u))

    # Right ventricle: larger ellipsoid on the septal side; the LV myocardium (higher priority) carves the crescent.
    rv_frame = orthonormal_frame(u + rng.normal(0.0, 0.05, 3), _HEART_SEPTAL_DIR + rng.normal(0.0, 0.1, 3))
    rv_center = lv_center + (32.0 * k + rng.normal(0.0, 1.5)) * frame[:, 1] - 8.0 * k * u + pos(1.5)
    rv_radii = (36.0 * k * size(), 22.0 * k * size(), 38.0 * k * size())
    aortic_valve = point(10.0, 2.0, 12.0) + pos(1.5)
    pulmonary_valve = aortic_valve + k * np.array([-18.0, 14.0, 10.0]) + pos(1.5)
    rvot = np.stack([rv_center + k * np.array([-4.0, 0.0, 10.0]), pulmonary_valve])
    rvot_radii = np.array([12.0, 11.0]) * k * size()

    def rv_sdf(q: Coords) -> np.ndarray:
        return np.minimum(ellipsoid_sdf(q, rv_center, rv_frame, rv_radii), tube_sdf(q, rvot, rvot_radii))

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

    def ao_sdf(q: Coords) -> np.ndarray:
        return tube_sdf(q, ao_points, ao_radii)

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

    def pa_sdf(q: Coords) -> np.ndarray:
        trunk = tube_sdf(q, pa_trunk, np.array([pa_radius, pa_radius]))
        left = tube_sdf(q, lpa, np.array([branch, 0.85 * branch]))
        right = tube_sdf(q, rpa, np.array([branch, branch, 0.85 * branch]))
        return np.minimum(trunk, np.minimum(left, right))

    # Left atrium: posterior-superior, behind the LV base, with left and right pulmonary-vein ostia.
    la_center = point(-2.0, -30.0, 12.0) + pos()
    la_frame = random_rotation(rng, 10.0)
    la_radii = (30.0 * k * size(), 22.0 * k * size(), 20.0 * k * size())
    veins = [
        np.stack([la_center + k * np.array([-18.0, -8.0, 4.0]), la_center + k * np.array([-38.0, -16.0, 8.0])]),
        np.stack([la_center + k * np.array([18.0, -8.0, 4.0]), la_center + k * np.array([38.0, -16.0, 6.0])]),
    ]
    vein_radii = np.array([7.0, 6.0]) * k

    def la_sdf(q: Coords) -> np.ndarray:
        out = ellipsoid_sdf(q, la_center, la_frame, la_radii)
        for vein in veins:
            out = np.minimum(out, tube_sdf(q, vein, vein_radii))
        return out

    # Right atrium: right of the LA, superior-right of the RV.
    ra_center = point(36.0, -4.0, 10.0) + pos()
    ra_frame = random_rotation(rng, 10.0)
    ra_radii = (22.0 * k * size(), 23.0 * k * size(), 26.0 * k * size())

    def ra_sdf(q: Coords) -> np.ndarray:
        return ellipsoid_sdf(q, ra_center, ra_frame, ra_radii)

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
        "left_ventricle": Structure(lv_sdf, lv_center, max(lv_radii)),
        "myocardium": Structure(myo_sdf, lv_center, epi_r),
        "right_ventricle": Structure(rv_sdf, rv_c, rv_r),
        "ascending_aorta": Structure(ao_sdf, ao_c, ao_r),
        "pulmonary_artery": Structure(pa_sdf, pa_c, pa_r),
        "left_atrium": Structure(la_sdf, la_c, la_r),
        "right_atrium": Structure(ra_sdf, ra_center, max(ra_radii)),
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


def _heart_extent(anatomy: dict[str, Structure], rotation: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """World bounding box (mm) of the rotated and scaled heart, from a coarse 5 mm evaluation."""
    step, half = 5.0, 110.0
    n = int(2 * half / step) + 1
    pose = Pose(rotation, np.zeros(3), scale)
    coords = posed_coords((n, n, n), (step, step, step), pose, None)
    inside = np.zeros((n, n, n), dtype=bool)
    for structure in anatomy.values():
        inside |= evaluate_structure(structure, coords, pose, (step, step, step), 2.0 * step) < 0
    index = np.argwhere(inside)
    lo = (index.min(axis=0) - 0.5 * (n - 1)) * step - step
    hi = (index.max(axis=0) - 0.5 * (n - 1)) * step + step
    return lo, hi


def _heart_pose(
    rng: np.random.Generator,
    anatomy: dict[str, Structure],
    scale: float,
    shape: Sequence[int],
    spacing: Sequence[float],
) -> Pose:
    """Random rotation (<= 15 deg per axis) and shift (<= 10 mm) that keep the heart in view.

    The shift is drawn only among those that keep the whole heart (plus a margin for the smooth warp) inside the
    field of view; a heart too large for the view is first shrunk a little, then centred.
    """
    rotation = random_rotation(rng, 15.0)
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
    return Pose(rotation=rotation, translation=translation, scale=scale)


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
    x, y, z = axis_mm(shape, spacing)
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
    slab_width = rng.uniform(16.0, 24.0) + 5.0 * smooth_field(rng, shape, spacing, 30.0)
    slab = (np.abs(x - midline) < slab_width) & (y > spine_y)
    fat_layer = 3.0 + 5.0 * (0.5 + 0.5 * np.tanh(smooth_field(rng, shape, spacing, 25.0)))
    mediastinum = cavity & ~abdomen & (slab | (heart_distance < fat_layer + 3.0) | (aorta < 5.0) | (oesophagus < 4.0))
    tissue[mediastinum] = _FAT
    nodules = mediastinum & (smooth_field(rng, shape, spacing, 12.0) > 1.3)
    tissue[nodules] = _MUSCLE
    tissue[cavity & (aorta < 1.5)] = _MUSCLE
    tissue[cavity & (aorta < 0)] = _LEFT_BLOOD
    tissue[cavity & (oesophagus < 0)] = _MUSCLE

    # Lung vessels: where two smooth fields both cross zero, i.e. along random branching curves.
    pair = smooth_field(rng, shape, spacing, 16.0, channels=2)
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
    image += lung * np.float32(rng.uniform(15.0, 35.0)) * smooth_field(rng, shape, spacing, 6.0)
    right = (tissue == _RIGHT_BLOOD).astype(np.float32)  # unopacified inflow mixing in the right heart
    image += right * np.float32(rng.uniform(0.0, 50.0)) * smooth_field(rng, shape, spacing, 15.0)
    soft = np.isin(tissue, (_MUSCLE, _LIVER, _FAT, _MYO)).astype(np.float32)
    image += soft * np.float32(8.0) * smooth_field(rng, shape, spacing, 10.0)
    image = blur(image, partial_volume_sigma(spacing, 0.7))
    image += rng.standard_normal(shape, dtype=np.float32) * np.float32(rng.uniform(15.0, 30.0))
    return np.clip(image, -1024.0, 3071.0).astype(np.float32)


def _mr_image(rng: np.random.Generator, tissue: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    shape = tissue.shape
    image = _mr_intensities(rng)[tissue]
    image *= 1.0 + np.float32(0.06) * smooth_field(rng, shape, spacing, 10.0)
    image = blur(image, partial_volume_sigma(spacing, 0.9))
    bias = np.exp(np.float32(rng.uniform(0.1, 0.2)) * smooth_field(rng, shape, spacing, 80.0))
    scale = np.float32(rng.uniform(200.0, 2000.0))
    image *= bias * scale
    return rician(image, float(scale) * rng.uniform(0.02, 0.045), rng).astype(np.float32)


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
    modality = checked_choice(modality, tuple(_HEART_MODALITY_PREFIX), "modality").lower()
    shape = checked_shape(shape, _MIN_HEART_SIZE)
    spacing = checked_spacing(spacing)
    rng = np.random.default_rng(seed)

    scale = float(rng.uniform(0.85, 1.15))
    anatomy = _heart_anatomy(rng, scale)
    pose = _heart_pose(rng, anatomy, scale, shape, spacing)
    warp = smooth_field(rng, shape, spacing, 45.0, channels=3) * np.float32(rng.uniform(2.0, 4.0))
    coords = posed_coords(shape, spacing, pose, warp)
    sdfs = {name: evaluate_structure(structure, coords, pose, spacing, 15.0) for name, structure in anatomy.items()}
    label = _heart_labels(sdfs)
    heart_distance = np.minimum.reduce(list(sdfs.values()))
    tissue = _chest_tissues(rng, shape, spacing, heart_distance, label)
    image = _ct_image(rng, tissue, spacing) if modality == "ct" else _mr_image(rng, tissue, spacing)
    return image, label, ras_affine(shape, spacing)


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
    modality = checked_choice(modality, tuple(_HEART_MODALITY_PREFIX), "modality").lower()
    num_cases = checked_num_cases(num_cases)
    shape = checked_shape(shape, _MIN_HEART_SIZE)
    spacing = checked_spacing(spacing)
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
        save_nifti(image, affine, entry["image"], np.float32)
        if with_labels:
            entry["label"] = f"{stem}_label.nii.gz"
            save_nifti(label, affine, entry["label"], np.int16)
        entries.append(entry)
    return entries
