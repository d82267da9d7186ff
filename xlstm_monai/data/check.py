"""
Checks a datalist before any training or evaluation step.

Every problem is collected and reported together, one line per file, so a user fixes a dataset in one pass rather
than one crash per hour of training. Files are read with MONAI's ``LoadImage``, the reader the bundles use, so a
file that passes here is one the pipeline can read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

import nibabel as nib
import numpy as np
import torch
from monai.transforms import LoadImage
from tqdm import tqdm

from xlstm_monai.distributed import broadcast_from_rank0, is_distributed

__all__ = ["DataCheckError", "DataCheckReport", "check_datalist", "screen_headers"]

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


def _check_geometry(label_name, shape, label_affine, image_name, image_shape, image_affine, tolerance, report):
    """A label lies on its image's grid: the same spatial shape and affine (within ``tolerance`` mm)."""
    if image_shape is not None and tuple(shape) != tuple(image_shape):
        report.problems[label_name].append(
            f"shape {tuple(shape)} differs from image {image_name} shape {tuple(image_shape)}"
        )
    if image_affine is not None and not np.allclose(label_affine, image_affine, atol=tolerance):
        report.problems[label_name].append(
            f"affine differs from image {image_name}: label {np.round(label_affine, 3).tolist()} vs image "
            f"{np.round(image_affine, 3).tolist()}"
        )


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
    _check_geometry(label_name, shape, label_affine, image_name, image_shape, image_affine, affine_tolerance, report)
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


def _header(path) -> tuple[tuple[int, ...], np.ndarray] | None:
    """(shape, affine) from a NIfTI header without reading voxels; None for other formats (read in full)."""
    name = str(path).lower()
    if not name.endswith((".nii", ".nii.gz")):
        return None
    image = nib.load(str(path))
    return tuple(int(s) for s in image.shape), np.asarray(image.affine, dtype=np.float64)


def _check_case(case: Mapping, index: int, settings: Mapping) -> tuple[dict, dict]:
    """Problems and warnings of one datalist entry, by file: headers first, voxels where a check needs them."""
    report = DataCheckReport()
    if "image" not in case:
        report.problems[f"datalist entry {index}"].append("has no 'image'")
        return dict(report.problems), dict(report.warnings)
    loader = _loader()
    spatial_dims, channels = settings["spatial_dims"], settings["channels"]
    image_name, label = str(case["image"]), case.get("label")
    classification = settings["num_classes"] is not None or isinstance(label, (int, np.integer))
    label_file = label is not None and not classification
    # headers: geometry problems are found without reading a voxel, and a case that has them is not read further
    headers = {}
    for name in [image_name] + ([str(label)] if label_file else []):
        try:
            headers[name] = _header(name)
        except Exception as error:  # a header that does not parse: the file cannot be read
            report.problems[name].append(f"cannot be read ({_reason(error)})")
    if report.problems:
        return dict(report.problems), dict(report.warnings)
    image_shape = image_affine = None
    if headers[image_name] is not None:
        image_shape = _spatial_shape(
            torch.empty(headers[image_name][0], device="meta"), channels, image_name, report, spatial_dims
        )
        image_affine = headers[image_name][1]
        if label_file and headers[str(label)] is not None:
            shape, affine = headers[str(label)]
            label_shape = _spatial_shape(torch.empty(shape, device="meta"), 1, str(label), report, spatial_dims)
            if label_shape is not None:
                _check_geometry(
                    str(label),
                    label_shape,
                    affine,
                    image_name,
                    image_shape,
                    image_affine,
                    settings["affine_tolerance"],
                    report,
                )
        if report.problems:
            return dict(report.problems), dict(report.warnings)
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
    if label is None:
        return dict(report.problems), dict(report.warnings)
    num_classes = settings["num_classes"]
    if classification:
        if num_classes is not None and not (isinstance(label, (int, np.integer)) and 0 <= int(label) < num_classes):
            report.problems[image_name].append(f"class label {label!r} is not a class index below {num_classes}")
        return dict(report.problems), dict(report.warnings)
    try:
        label_array, label_affine = _load(label, loader)
    except Exception as error:
        report.problems[str(label)].append(f"cannot be read ({_reason(error)})")
        return dict(report.problems), dict(report.warnings)
    _check_label(
        str(label),
        label_array,
        label_affine,
        image_name,
        image_shape,
        image_affine,
        settings["label_values"],
        settings["affine_tolerance"],
        report,
        spatial_dims,
    )
    return dict(report.problems), dict(report.warnings)


_LOADER: LoadImage | None = None


def _loader() -> LoadImage:
    global _LOADER
    if _LOADER is None:
        _LOADER = LoadImage(image_only=True)
    return _LOADER


def _cache_dir() -> str:
    """$XLSTM_MONAI_CACHE/data_check, by default ~/.cache/xlstm-monai/data_check."""
    root = os.environ.get("XLSTM_MONAI_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "xlstm-monai"))
    return os.path.join(root, "data_check")


def _cache_key(case: Mapping, settings: Mapping) -> str | None:
    """A key that changes when a file of the case (path, size, modification time) or a setting changes."""
    files = [case.get("image")] + ([case["label"]] if isinstance(case.get("label"), str) else [])
    stamps = []
    for path in files:
        try:
            stat = os.stat(str(path))
        except OSError:
            return None  # a missing file is checked (and reported) every time
        stamps.append([os.path.abspath(str(path)), stat.st_size, stat.st_mtime_ns])
    text = json.dumps(
        [stamps, case.get("label") if not isinstance(case.get("label"), str) else None, settings],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha1(text.encode()).hexdigest()


def _cached(key: str | None) -> tuple[dict, dict] | None:
    if key is None:
        return None
    try:
        with open(os.path.join(_cache_dir(), key[:2], f"{key}.json")) as handle:
            entry = json.load(handle)
        return entry["problems"], entry["warnings"]
    except (OSError, ValueError, KeyError):
        return None


def _store(key: str | None, result: tuple[dict, dict]) -> None:
    if key is None:
        return
    folder = os.path.join(_cache_dir(), key[:2])
    try:
        os.makedirs(folder, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(handle, "w") as out:
            json.dump({"problems": result[0], "warnings": result[1]}, out)
        os.replace(tmp, os.path.join(folder, f"{key}.json"))
    except OSError as error:  # a read-only home: the check still runs, it is just not remembered
        logger.debug(f"data check cache not written: {error}")


def _init_worker() -> None:
    torch.set_num_threads(1)  # each process checks one case at a time; the pool is the parallelism


def _run_checks(entries: Sequence[Mapping], settings: Mapping, workers: int, cache: bool) -> list[tuple[dict, dict]]:
    keys = [_cache_key(case, settings) if cache else None for case in entries]
    results: list = [_cached(key) for key in keys]
    todo = [i for i, result in enumerate(results) if result is None]
    progress = tqdm(
        total=len(entries),
        initial=len(entries) - len(todo),
        desc="data check",
        unit="case",
        disable=True if len(todo) < 20 else None,  # None: shown on a terminal only
        leave=False,
    )
    if workers > 1 and len(todo) >= 2 * workers:
        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker) as pool:
            futures = {pool.submit(_check_case, entries[i], i, settings): i for i in todo}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                progress.update()
    else:
        for i in todo:
            results[i] = _check_case(entries[i], i, settings)
            progress.update()
    progress.close()
    for i in todo:
        _store(keys[i], results[i])
    return results


def check_datalist(
    cases: Sequence[Mapping],
    label_values: Sequence[int | None] | None = None,
    validation: Sequence[Mapping] = (),
    num_classes: int | None = None,
    channels: int = 1,
    spatial_dims: int = 3,
    affine_tolerance: float = 1e-3,
    raise_error: bool = True,
    workers: int | None = None,
    cache: bool = True,
) -> DataCheckReport:
    """
    Check every case of a datalist: each image (and label) exists and reads; images are ``spatial_dims``-D (or
    one more dimension holding ``channels``); intensities are finite; an image and its label share shape and
    affine (within ``affine_tolerance`` mm); label values are in ``label_values`` (segmentation) or the label is
    a class index below ``num_classes`` (classification). Warnings, which do not stop a run: an empty label, an
    image of constant intensity (normalisation makes it blank), an image in both the training and the validation
    set (the validation figures would be optimistic).

    It scales to large datasets: NIfTI headers are read first (a case with a geometry problem is not read
    further), cases are checked in a process pool, results are cached by each file's path, size and modification
    time (an unchanged dataset is not read again; ``$XLSTM_MONAI_CACHE``), and in a distributed run rank 0 checks
    while the other ranks wait for its report.

    Args:
        cases: datalist entries with "image" and, where labeled, "label" (the training set).
        validation: the validation set's entries, checked the same way.
        label_values: declared label values of a segmentation (None entries are ignored).
        num_classes: number of classes of a classification datalist.
        raise_error: raise :class:`DataCheckError` listing every problem; otherwise just return the report.
        workers: processes of the pool; default the CPU count (at most 8). 1 checks serially.
        cache: read and write the cache of results.
    """
    settings = {
        "label_values": None if label_values is None else [int(v) for v in label_values if v is not None],
        "num_classes": num_classes,
        "channels": int(channels),
        "spatial_dims": int(spatial_dims),
        "affine_tolerance": float(affine_tolerance),
    }
    entries = list(cases) + list(validation)
    report = None
    if not is_distributed() or torch.distributed.get_rank() == 0:
        report = DataCheckReport(checked=len(entries))
        training_images = {str(c.get("image")) for c in cases}
        for image in sorted({str(c.get("image")) for c in validation} & training_images):
            report.warnings[image].append("is in both the training and the validation set")
        count = int(workers) if workers else min(os.cpu_count() or 1, 8)
        for problems, warnings in _run_checks(entries, settings, count, cache):
            for name, items in problems.items():
                report.problems[name].extend(items)
            for name, items in warnings.items():
                report.warnings[name].extend(items)
    report = broadcast_from_rank0(report)
    if not is_distributed() or torch.distributed.get_rank() == 0:  # one report in the log, every rank obeys it
        for line in report.lines("warnings"):
            logger.warning(f"data check: {line}")
        if report.ok:
            logger.info(f"data check: {report.checked} cases passed")
    if not report.ok and raise_error:
        raise DataCheckError(report.summary())
    return report


def screen_headers(entries: Sequence[Mapping], channels: int = 1, spatial_dims: int = 3) -> DataCheckReport:
    """
    The problems an image's header shows without reading its voxels (NIfTI: does not parse, not a volume, wrong
    channels); other formats and DICOM folders are left to the reader. For inference, which then reads each input once.
    """
    report = DataCheckReport(checked=len(entries))
    for entry in entries:
        name = str(entry["image"])
        try:
            header = _header(name)
        except Exception as error:
            report.problems[name].append(f"cannot be read ({_reason(error)})")
            continue
        if header is not None:
            _spatial_shape(torch.empty(header[0], device="meta"), channels, name, report, spatial_dims)
    return report


def _reason(error: Exception) -> str:
    """The innermost message of a reader error (MONAI wraps the reader's own)."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}"[:200]
