"""
DICOM series as inference inputs: a folder of series (one per subfolder, or files of several series mixed) becomes
one volume per series, read by MONAI's ``PydicomReader`` with its orientation and spacing.

Series are grouped by SeriesInstanceUID from the headers alone. A series that a 3D bundle cannot take as one volume
(no pixel data, a multi-frame or cine series, missing or unevenly spaced slices, mixed orientations or grids) is
listed with the reason and left out, so one bad series never stops a folder.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["DicomSeries", "find_dicom_series", "group_dicom_series", "is_dicom_folder"]

logger = logging.getLogger(__name__)

# SOP classes whose instances are not slices of an image volume
_NOT_IMAGES = {"SEG", "SR", "PR", "KO", "RTSTRUCT", "RTPLAN", "RTDOSE", "REG", "DOC"}
_SPACING_TOLERANCE = 0.01  # relative deviation of a slice gap from the median gap


@dataclass
class DicomSeries:
    """One series: its files in slice order along the slice normal, and why it cannot be used (None if it can)."""

    uid: str
    files: list[str]
    description: str
    problem: str | None = None
    datasets: list = field(default_factory=list, repr=False)  # headers, in the order of ``files``

    @property
    def name(self) -> str:
        """How logs and error lines name the series: its description and folder."""
        return f"series {self.description!r} ({os.path.dirname(self.files[0]) if self.files else '?'}, {self.uid})"


def _read_header(path: str):
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # not a DICOM file (a README, an attribution text): not part of any series
        return None


def is_dicom_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` (or a subfolder) holds DICOM files (by extension or by the DICM preamble)."""
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            if name.lower().endswith(".dcm"):
                return True
            try:
                with open(path, "rb") as handle:
                    if handle.read(132)[128:132] == b"DICM":
                        return True
            except OSError:
                continue
    return False


def _normal(ds) -> np.ndarray:
    orientation = np.asarray(ds.ImageOrientationPatient, dtype=float)
    return np.cross(orientation[:3], orientation[3:])


def _problem(datasets: Sequence) -> str | None:
    """Why these instances of one series are not one 3D volume, or None."""
    first = datasets[0]
    modality = str(first.get("Modality", ""))
    if modality in _NOT_IMAGES or "PixelData" not in first and "Rows" not in first:
        return f"is not an image series (modality {modality or 'unknown'})"
    if int(first.get("NumberOfFrames", 1) or 1) > 1:
        return f"is a multi-frame instance ({first.NumberOfFrames} frames): a 3D bundle takes one frame per slice"
    needed = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
    missing = [tag for tag in needed if tag not in first]
    if missing:
        return f"has no {', '.join(missing)}: its geometry is unknown"
    if len(datasets) < 2:
        return "has a single slice: not a volume"
    grids = {(int(d.Rows), int(d.Columns), tuple(round(float(v), 4) for v in d.PixelSpacing)) for d in datasets}
    if len(grids) > 1:
        return f"mixes slice grids (rows, columns, pixel spacing): {sorted(grids)}"
    orientations = {tuple(round(float(v), 3) for v in d.ImageOrientationPatient) for d in datasets}
    if len(orientations) > 1:
        return f"mixes {len(orientations)} slice orientations"
    normal = _normal(first)
    positions = np.array([np.dot(normal, np.asarray(d.ImagePositionPatient, dtype=float)) for d in datasets])
    unique = np.unique(np.round(positions, 3))
    if len(unique) < len(positions):
        times = {str(d.get("TriggerTime", "")) for d in datasets}
        kind = f"a cine series ({len(times)} time points)" if len(times) > 1 else "several slices at one position"
        return f"is 4D: {len(positions)} slices at {len(unique)} positions, {kind}; give a 3D bundle one time point"
    gaps = np.diff(np.sort(positions))
    median = float(np.median(gaps))
    uneven = np.abs(gaps - median) > _SPACING_TOLERANCE * median + 1e-3
    if uneven.any():
        if (gaps[uneven] > 1.5 * median).all():
            missing = int(np.round(gaps[uneven] / median).sum() - uneven.sum())
            wide = sorted({float(g) for g in np.round(gaps[uneven], 2)})
            return f"misses {missing} slice(s): gaps of {wide} mm where the others are {median:.2f} mm"
        return f"has uneven slice spacing: gaps from {gaps.min():.2f} to {gaps.max():.2f} mm"
    return None


def find_dicom_series(folder: str | os.PathLike) -> list[DicomSeries]:
    """
    Every series below ``folder``, grouped by SeriesInstanceUID whatever the file layout, each with its files in
    slice order and its ``problem`` (None when a 3D bundle can read it as one volume), sorted by folder and uid.
    """
    paths = [os.path.join(root, name) for root, _, names in os.walk(folder) for name in sorted(names)]
    return group_dicom_series(paths)


def group_dicom_series(paths: Sequence[str]) -> list[DicomSeries]:
    """The series that the files ``paths`` form (files that are not DICOM are ignored), as :func:`find_dicom_series`."""
    groups: dict[str, list[tuple[str, object]]] = defaultdict(list)
    for path in paths:
        ds = _read_header(path)
        if ds is not None and "SeriesInstanceUID" in ds:
            groups[str(ds.SeriesInstanceUID)].append((path, ds))
    series = []
    for uid, members in groups.items():
        datasets = [ds for _, ds in members]
        description = str(datasets[0].get("SeriesDescription", "") or datasets[0].get("Modality", "series"))
        problem = _problem(datasets)
        if problem is None:  # slice order along the normal, as PydicomReader stacks them
            normal = _normal(datasets[0])
            members = sorted(members, key=lambda m: float(np.dot(normal, np.asarray(m[1].ImagePositionPatient))))
        series.append(DicomSeries(uid, [p for p, _ in members], description, problem, [ds for _, ds in members]))
    return sorted(series, key=lambda s: (os.path.dirname(s.files[0]), s.uid))
