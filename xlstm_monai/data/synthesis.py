"""
Brain MRI synthesised from whole-head label maps, as SynthSeg does (Billot et al., Medical Image Analysis 2023): each
image is a crop of a label map, deformed, with a Gaussian intensity drawn per label, then blurred, given a bias field,
a lower resolution, a gamma and noise. From the 20 maps in ``$XLSTM_MONAI_DATA/synthseg_label_maps`` this gives
unlabeled (or labeled) brain images in any number at CPU cost: a corpus for pretraining, and for measuring the data
path at sizes this repository does not hold.

Every image is drawn from its own seed (the corpus seed and its index), so a corpus is the same wherever and in
whatever order it is written, and an interrupted write resumes. The spatial and intensity steps are MONAI's random
transforms; only the per-label intensity draw is written here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.transforms import (
    Compose,
    RandAdjustContrast,
    RandAffine,
    RandBiasField,
    RandGaussianNoise,
    RandGaussianSmooth,
    RandSimulateLowResolution,
)

__all__ = ["HIPPOCAMPUS_LABELS", "T1_CLASSES", "LabelMapSynthesizer", "write_synthetic_images"]

HIPPOCAMPUS_LABELS = (17, 53)  # FreeSurfer left / right hippocampus
# FreeSurfer labels by tissue, for T1-like contrast (white matter bright, grey matter darker, fluid dark); labels in
# none (extra-cerebral tissue, skull) draw any intensity, as every label does with contrast="random"
T1_CLASSES = {
    "white_matter": ((2, 7, 16, 28, 41, 46, 60), 0.80),
    "grey_matter": ((3, 8, 10, 11, 12, 13, 17, 18, 26, 42, 47, 49, 50, 51, 52, 53, 54, 58), 0.55),
    "fluid": ((4, 5, 14, 15, 24, 43, 44, 72), 0.15),
}


@lru_cache(maxsize=32)
def _label_map(path: str) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray]:
    """A label map as integers, its affine, the hippocampi's centres and a sample of head voxels (read and located
    once per process)."""
    image = nib.load(path)
    labels = np.asarray(image.dataobj).astype(np.int16)
    centres = [np.argwhere(labels == label).mean(0) for label in HIPPOCAMPUS_LABELS]
    head = np.argwhere(labels[::4, ::4, ::4] > 0) * 4
    return labels, image.affine, centres, head


def _crop(labels: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """``labels[start:stop]``, with background where the box leaves the map."""
    inside = tuple(slice(max(a, 0), min(b, n)) for a, b, n in zip(start, stop, labels.shape))
    padding = [(max(-a, 0), max(b - n, 0)) for a, b, n in zip(start, stop, labels.shape)]
    return np.pad(labels[inside], padding)


class LabelMapSynthesizer:
    """
    Draws synthetic T1-like crops from label maps.

    Args:
        label_maps: the NIfTI label maps (FreeSurfer values), all at the same 1 mm grid.
        size_range: the smallest and largest crop size per axis in voxels; each image draws its size in between.
        around: "hippocampus" centres each crop on a hippocampus (left or right, jittered by ``jitter`` mm), as the
            MSD Task04 crops are; "random" places it anywhere in the head.
        contrast: "t1" draws each tissue class's mean near its T1 value; "random" draws every label's mean anywhere
            in [0, 1], SynthSeg's domain randomisation.
        seed: the corpus seed; image ``i`` is drawn from ``(seed, i)`` alone.
    """

    def __init__(
        self,
        label_maps: Sequence[str | os.PathLike],
        size_range: tuple[Sequence[int], Sequence[int]] = ((40, 52, 40), (56, 72, 56)),
        around: str = "hippocampus",
        contrast: str = "t1",
        jitter: float = 6.0,
        seed: int = 0,
    ) -> None:
        if not label_maps:
            raise ValueError("no label maps given")
        if around not in ("hippocampus", "random"):
            raise ValueError(f"around should be 'hippocampus' or 'random', not {around!r}")
        if contrast not in ("t1", "random"):
            raise ValueError(f"contrast should be 't1' or 'random', not {contrast!r}")
        self.label_maps = [str(p) for p in label_maps]
        self.size_range = (np.asarray(size_range[0]), np.asarray(size_range[1]))
        self.around, self.contrast, self.jitter, self.seed = around, contrast, jitter, seed
        margin = int(self.size_range[1].max() // 4)  # room for rotation and scaling before the final crop
        self.spatial = RandAffine(
            prob=1.0,
            rotate_range=(0.26, 0.26, 0.26),
            scale_range=(0.12, 0.12, 0.12),
            shear_range=(0.03, 0.03, 0.03),
            mode="nearest",
            padding_mode="zeros",
        )
        self.margin = margin
        self.imaging = Compose(
            [
                RandGaussianSmooth(sigma_x=(0.3, 1.0), sigma_y=(0.3, 1.0), sigma_z=(0.3, 1.0), prob=0.8),
                RandBiasField(coeff_range=(0.0, 0.1), degree=3, prob=0.9),
                RandSimulateLowResolution(prob=0.4, zoom_range=(0.5, 1.0)),
                RandAdjustContrast(gamma=(0.7, 1.4), prob=0.5),
                RandGaussianNoise(std=0.02, prob=0.8),
            ]
        )

    def _means(self, rng: np.random.Generator, labels: np.ndarray) -> dict[int, tuple[float, float]]:
        """Each label's mean and standard deviation of intensity."""
        draws = {}
        if self.contrast == "t1":
            for members, mean in T1_CLASSES.values():
                centre = mean + rng.normal(0.0, 0.05)
                for label in members:
                    draws[label] = (float(np.clip(centre + rng.normal(0.0, 0.03), 0.02, 1.0)), rng.uniform(0.01, 0.04))
        for label in labels:
            if int(label) not in draws:
                draws[int(label)] = (rng.uniform(0.0, 1.0), rng.uniform(0.01, 0.06))
        draws[0] = (rng.uniform(0.0, 0.05), 0.01)  # background (air) stays dark
        return draws

    def __call__(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image ``index``: intensities in [0, 1] (float32), its label crop (int16) and its affine."""
        rng = np.random.default_rng((self.seed, int(index)))
        labels, affine, centres, head = _label_map(self.label_maps[int(index) % len(self.label_maps)])
        size = rng.integers(self.size_range[0], self.size_range[1] + 1)
        if self.around == "hippocampus":
            centre = centres[int(rng.integers(2))] + rng.normal(0.0, self.jitter, 3)
        else:
            centre = head[rng.integers(len(head))].astype(float)
        start = np.round(centre - size / 2 - self.margin).astype(int)
        stop = start + size + 2 * self.margin
        region = _crop(labels, start, stop)
        self.spatial.set_random_state(seed=int(rng.integers(2**31)))
        region = np.asarray(self.spatial(region[None].astype(np.float32)))[0].astype(np.int16)
        region = region[tuple(slice(self.margin, self.margin + s) for s in size)]
        image = np.zeros(region.shape, np.float32)
        for label, (mean, sd) in self._means(rng, np.unique(region)).items():
            inside = region == label
            if inside.any():
                image[inside] = rng.normal(mean, sd, int(inside.sum()))
        self.imaging.set_random_state(seed=int(rng.integers(2**31)))
        image = np.asarray(self.imaging(image[None]))[0]
        image = np.clip(image, 0.0, 1.5)
        shift = np.eye(4)
        shift[:3, 3] = start + self.margin
        return image.astype(np.float32), region, affine @ shift


def _write_one(synthesize: LabelMapSynthesizer, image_file: Path, index: int, with_labels: bool) -> None:
    image_file.parent.mkdir(parents=True, exist_ok=True)
    image, labels, affine = synthesize(index)
    temporary = image_file.with_name(f".{image_file.name}")
    nib.save(nib.Nifti1Image(np.round(image * 1000).astype(np.int16), affine), temporary)
    if with_labels:
        nib.save(nib.Nifti1Image(labels, affine), image_file.with_name(image_file.name.replace(".nii", "_label.nii")))
    os.replace(temporary, image_file)  # the image file appears complete, or not at all


def write_synthetic_images(
    label_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    num_images: int,
    with_labels: bool = False,
    per_folder: int = 1000,
    workers: int = 1,
    **synthesizer,
) -> list[Path]:
    """
    Write ``num_images`` synthetic brain crops (int16 NIfTI, intensities x 1000) to ``out_dir``, ``per_folder`` to a
    sub-folder as a large archive would be (``part000/synth_000000.nii.gz``), and labels beside them with
    ``with_labels``, in ``workers`` processes. An image already written is kept, so an interrupted write resumes;
    ``out_dir/corpus.json`` records the settings once the corpus is complete. Settings: :class:`LabelMapSynthesizer`'s.
    Returns the image files in index order.
    """
    maps = sorted(Path(label_dir).glob("*.nii*"))
    if not maps:
        raise FileNotFoundError(f"{label_dir}: no NIfTI label maps")
    synthesize = LabelMapSynthesizer(maps, **synthesizer)
    out = Path(out_dir)
    files = [out / f"part{i // per_folder:03d}" / f"synth_{i:06d}.nii.gz" for i in range(int(num_images))]
    todo = [(file, index) for index, file in enumerate(files) if not file.is_file()]
    if workers > 1 and len(todo) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawned, not forked: a fork of a process whose torch threads hold a lock can hang in the child
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(_write_one, *zip(*[(synthesize, f, i, with_labels) for f, i in todo]), chunksize=16))
    else:
        for file, index in todo:
            _write_one(synthesize, file, index, with_labels)
    settings = {"label_maps": [m.name for m in maps], "num_images": int(num_images), **synthesizer}
    (out / "corpus.json").write_text(json.dumps(settings, indent=1, default=list))
    return files
