"""Medical Segmentation Decathlon Task04-like T1 crop with anterior / posterior hippocampus labels."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from xlstm_monai.data.label_codes import HIPPOCAMPUS_LABELS

from .imaging import (
    blur,
    checked_num_cases,
    checked_shape,
    checked_spacing,
    partial_volume_sigma,
    ras_affine,
    rician,
    save_nifti,
    smooth_field,
)
from .shapes import FAR, Pose, curved_tube, posed_coords, random_rotation

_MIN_HIPPOCAMPUS_SIZE = 16


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
    shape = checked_shape(shape, _MIN_HIPPOCAMPUS_SIZE)
    spacing = checked_spacing(spacing)
    rng = np.random.default_rng(seed)
    medial = float(rng.choice([-1.0, 1.0]))  # left or right hippocampus: the medial side is +X or -X

    points, width, height = _hippocampus_curve(rng, medial)
    split = rng.uniform(0.32, 0.42)
    pose = Pose(random_rotation(rng, 10.0), rng.uniform(-2.5, 2.5, 3), float(rng.uniform(0.88, 1.12)))
    warp = smooth_field(rng, shape, spacing, 12.0, channels=3) * np.float32(rng.uniform(0.8, 1.6))
    q = posed_coords(shape, spacing, pose, warp)
    side = (1.0, 0.0, 0.0)
    hippo, t_along = curved_tube(q, points, width, height, side)
    hippo *= np.float32(pose.scale)

    # Neighbours, offset from the same centre line: temporal horn above-lateral, alveus on top, white matter below.
    up = np.array([0.0, 0.0, 1.0])
    lateral = np.array([-medial, 0.0, 0.0])
    horn_points = points + (height[:, None] + 1.6) * up + 0.35 * width[:, None] * lateral
    horn_r = rng.uniform(1.2, 2.4) * np.ones(len(points))
    horn, horn_t = curved_tube(q, horn_points, horn_r * 2.2, horn_r, side)
    horn = np.where(horn_t < rng.uniform(0.7, 0.95), horn, FAR)
    below_points = points - (height[:, None] + 2.2) * up
    below, _ = curved_tube(q, below_points, width * 1.2, np.full(len(points), 1.6), side)

    x, y, z = q
    gyri = smooth_field(rng, shape, spacing, 7.0)
    tissue = np.full(shape, _H_GM, dtype=np.uint8)
    lateral_bias = np.float32(-medial) * x / np.float32(8.0)  # more white matter laterally (temporal stem)
    tissue[gyri + lateral_bias > rng.uniform(0.0, 0.6)] = _H_WM
    tissue[below < 0] = _H_WM
    cistern = medial * x - (width.max() + rng.uniform(2.0, 6.0)) + 2.5 * smooth_field(rng, shape, spacing, 10.0)
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
    image = table[tissue] * (1.0 + np.float32(0.05) * smooth_field(rng, shape, spacing, 4.0))
    image = blur(image, partial_volume_sigma(spacing, 0.6))
    scale = np.float32(rng.uniform(60.0, 900.0))
    image *= np.exp(np.float32(rng.uniform(0.05, 0.15)) * smooth_field(rng, shape, spacing, 40.0)) * scale
    image = rician(image, float(scale) * rng.uniform(0.025, 0.06), rng)
    return image.astype(np.float32), label, ras_affine(shape, spacing)


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
    num_cases = checked_num_cases(num_cases)
    shape = checked_shape(shape, _MIN_HIPPOCAMPUS_SIZE)
    spacing = checked_spacing(spacing)
    for sub in ("imagesTr", "labelsTr"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    training = []
    for i in range(num_cases):
        image, label, affine = hippocampus_phantom(shape, spacing, seed + i)
        name = f"hippocampus_{i + 1:03d}.nii.gz"
        save_nifti(image, affine, os.path.join(out_dir, "imagesTr", name), np.float32)
        save_nifti(label, affine, os.path.join(out_dir, "labelsTr", name), np.uint8)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    dataset = {
        "name": "Hippocampus",
        "description": "Synthetic hippocampus phantoms in the Medical Segmentation Decathlon Task04 layout",
        "reference": "xlstm_monai.phantoms (synthetic, no patient data)",
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
