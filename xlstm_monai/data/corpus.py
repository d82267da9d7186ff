"""
Pretraining corpora larger than memory: the image list of a folder tree, a CSV or a datalist (built once and
cached), a training dataset cached in memory or on disk whose unreadable files are skipped, and a modality-balanced
sampler that is sharded across ranks and can resume in the middle of an epoch.

* :func:`pretraining_images` gives the ``{"image", "modality"}`` entries of ``dataset_dir``: a datalist (as
  before), a CSV of paths (column ``image``, optional ``modality``), or a folder tree of NIfTI files and DICOM series
  found recursively with include/exclude globs. A folder's list is cached in the bundle's ``data/datalists`` folder,
  keyed by the folder and the globs and rebuilt when the folder's listing changes. Files whose header cannot be read
  are left out and written to ``report_file``.
* :func:`training_dataset` is MONAI's ``CacheDataset`` in memory (the default, small sets) or its
  ``PersistentDataset`` under ``cache_dir`` (``cache="disk"``): the deterministic preprocessing is computed once per
  image and kept on disk, the random views are drawn at every step, and memory does not grow with the corpus. On disk
  the dataset is wrapped in :class:`SkipUnreadable`: an image that fails to load is logged once, written to
  ``report_file`` and replaced by another, so a bad file never stops a long run.
* :class:`ResumableWeightedSampler` is MONAI's ``DistributedWeightedRandomSampler`` (each rank draws from its own
  shard, weighted by modality) whose draws depend only on the seed, the epoch and the rank; attached to the trainer
  it skips the batches a resumed run has already done in its epoch, so a run killed mid-epoch resumes at its step.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import json
import logging
import os
import random
from collections.abc import Mapping, Sequence

import torch
import torch.distributed as dist
from ignite.engine import Engine, Events
from monai.data import CacheDataset, DistributedWeightedRandomSampler, PersistentDataset
from torch.utils.data import Dataset

from .bundle_datalist import DatalistError, default_datalist, prepare_datalist
from .layouts import normalize_modality
from .unlabeled import load_unlabeled_images

__all__ = [
    "MidEpochResume",
    "ResumableWeightedSampler",
    "SkipUnreadable",
    "UnreadableReport",
    "find_images",
    "pretraining_images",
    "read_image_csv",
    "training_dataset",
]

logger = logging.getLogger(__name__)

IMAGE_GLOBS = ("**/*.nii.gz", "**/*.nii")
CACHE_VERSION = 1


def _matches(relative: str, patterns: Sequence[str]) -> bool:
    """Whether a path relative to the folder matches one of the globs (``**/`` also matches no folder)."""
    relative = relative.replace(os.sep, "/")
    for pattern in patterns:
        if fnmatch.fnmatch(relative, pattern):
            return True
        if pattern.startswith("**/") and fnmatch.fnmatch(relative, pattern[3:]):
            return True
    return False


def _listing(folder: str) -> tuple[list[str], str]:
    """Every file below ``folder`` (relative paths, sorted) and a digest of the names, sizes and modification times."""
    files, digest = [], hashlib.sha1()
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            try:
                stat = os.stat(path)
            except OSError:
                continue
            relative = os.path.relpath(path, folder)
            files.append(relative)
            digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return files, digest.hexdigest()


def _write_report(report_file: str | None, unreadable: Mapping[str, str]) -> None:
    if report_file is None:
        return
    os.makedirs(os.path.dirname(os.path.abspath(report_file)), exist_ok=True)
    with open(report_file, "a") as handle:
        for path, reason in unreadable.items():
            handle.write(f"{path}\t{reason}\n")


def _nifti_problem(path: str) -> str | None:
    """Why the header of an image file cannot be read, or None (the voxels are read later, by the dataset)."""
    import nibabel as nib

    try:
        image = nib.load(path)
        if len(image.shape) < 3:
            return f"is {len(image.shape)}-D, not a volume"
    except Exception as error:  # not an image, or a header cut short
        return f"cannot be read: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
    return None


def _is_dicom_file(path: str) -> bool:
    if path.lower().endswith(".dcm"):
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _scan(folder: str, files: Sequence[str], include, exclude, modality: str | None, dicom: bool):
    from .bundle_datalist import _series_entry
    from .dicom import group_dicom_series

    images, unreadable, dicom_files = [], {}, []
    for relative in files:
        if _matches(relative, exclude):
            continue
        path = os.path.join(folder, relative)
        if not _matches(relative, include):
            if dicom and _is_dicom_file(path):  # by extension or by the DICM preamble
                dicom_files.append(path)
            continue
        problem = _nifti_problem(path)
        if problem is not None:
            unreadable[path] = problem
            continue
        images.append({"image": path, **({"modality": modality} if modality else {})})
    for series in group_dicom_series(dicom_files):
        entry = _series_entry(series)
        if "problem" in entry:
            unreadable[entry["image"]] = entry["problem"]
            continue
        tag = str(series.datasets[0].get("Modality", "")) if series.datasets else ""
        try:
            entry["modality"] = normalize_modality(tag) if tag else modality
        except ValueError:
            unreadable[entry["image"]] = f"{series.name} is {tag}, neither CT nor MRI"
            continue
        images.append(entry)
    return images, unreadable


def find_images(
    dataset_dir: str | os.PathLike,
    bundle_root: str | os.PathLike,
    include: Sequence[str] = IMAGE_GLOBS,
    exclude: Sequence[str] = (),
    modality: str | None = None,
    dicom: bool = True,
    report_file: str | None = None,
) -> list[dict]:
    """
    The images below ``dataset_dir``, found recursively: files matching the ``include`` globs (relative to the
    folder, ``**`` for any depth) and no ``exclude`` glob, and every DICOM series (one volume each, grouped by
    SeriesInstanceUID from the DICOM files, by extension or preamble, that no ``exclude`` glob matches). Files
    whose header does not read, and series that are not one CT or MRI volume, are left out, logged and appended to
    ``report_file``.

    The list is built once and kept in ``bundle_root/data/datalists`` (a JSON file named after the folder and a hash
    of its path and the globs); it is read again while the folder's listing (names, sizes and modification times) is
    unchanged, and rebuilt otherwise. In a distributed run rank 0 builds it while the other ranks wait.

    An entry's modality is the DICOM series' own, else ``modality``; entries without one keep none (the caller
    reports them).
    """
    folder = os.path.abspath(os.path.expanduser(str(dataset_dir)))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"dataset_dir {folder} does not exist")
    include, exclude = list(include), list(exclude)
    key = json.dumps({"folder": folder, "include": include, "exclude": exclude, "dicom": dicom, "modality": modality})
    stem = os.path.splitext(default_datalist(bundle_root, folder))[0]
    cache_file = f"{stem}_{hashlib.sha1(key.encode()).hexdigest()[:8]}_images.json"
    distributed = dist.is_available() and dist.is_initialized()
    if not distributed or dist.get_rank() == 0:
        files, listing = _listing(folder)
        cached = None
        if os.path.isfile(cache_file):
            with open(cache_file) as handle:
                try:
                    cached = json.load(handle)
                except json.JSONDecodeError:
                    cached = None
        if cached and any("series_uid" in e and not os.path.isdir(e["image"]) for e in cached.get("images", [])):
            cached = None  # a series gathered into a temporary folder of links that is gone (e.g. after a reboot)
        if not cached or cached.get("version") != CACHE_VERSION or cached.get("listing") != listing:
            logger.info(f"listing the images below {folder} (include {include}, exclude {exclude})")
            images, unreadable = _scan(folder, files, include, exclude, modality, dicom)
            cached = {"version": CACHE_VERSION, "key": json.loads(key), "listing": listing}
            cached.update(images=images, unreadable=unreadable)
            os.makedirs(os.path.dirname(cache_file), exist_ok=True)
            temporary = f"{cache_file}.{os.getpid()}.tmp"
            with open(temporary, "w") as handle:
                json.dump(cached, handle)
            os.replace(temporary, cache_file)
        else:
            logger.info(f"image list of {folder} read from {cache_file}")
        for path, reason in cached["unreadable"].items():
            logger.warning(f"left out: {path} {reason}")
        _write_report(report_file, cached["unreadable"])
    if distributed:
        dist.barrier()
    with open(cache_file) as handle:
        cached = json.load(handle)
    if not cached["images"]:
        raise FileNotFoundError(f"no readable image below {folder} matches {include} (exclude {exclude}), nor DICOM")
    return cached["images"]


def _layout(folder: str) -> bool:
    """Whether the datalist builder reads ``folder`` (as ``prepare_datalist`` does): a participants table, an MSD
    ``dataset.json``, MM-WHS names or paired ``imagesTr``/``labelsTr`` folders."""
    from pathlib import Path

    from .datalist import _detect_kind

    return os.path.isfile(os.path.join(folder, "participants.csv")) or _detect_kind(Path(folder)) != "images"


def read_image_csv(path: str | os.PathLike, base_dir: str | os.PathLike | None = None) -> list[dict]:
    """
    The images of a CSV of paths: column ``image`` (relative paths start from ``base_dir``, else the CSV's folder),
    optional ``modality``.
    """
    path = os.path.abspath(os.path.expanduser(str(path)))
    base = os.path.abspath(str(base_dir)) if base_dir is not None else os.path.dirname(path)
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if "image" not in (reader.fieldnames or []):
            raise DatalistError(f"image list {path} has no 'image' column (columns: {reader.fieldnames})")
        rows = list(reader)
    images = []
    for row in rows:
        if not row["image"]:
            continue
        entry = {"image": os.path.normpath(os.path.join(base, os.path.expanduser(row["image"])))}
        if row.get("modality"):
            entry["modality"] = row["modality"]
        images.append(entry)
    return images


def pretraining_images(
    dataset_dir: str,
    datalist: str,
    bundle_root: str,
    phantoms: str = "heart_ct_mr",
    num_phantoms: int = 12,
    phantom_dir: str | None = None,
    modality: str | None = None,
    include: Sequence[str] = IMAGE_GLOBS,
    exclude: Sequence[str] = (),
    report_file: str | None = None,
) -> list[dict]:
    """
    The images a pretraining run reads, as ``{"image", "modality"}``, from whichever form ``dataset_dir`` has:

    * a CSV file of paths (``dataset_dir`` or ``datalist`` ending in ``.csv``): :func:`read_image_csv`;
    * ``datalist`` exists: every image of its lists (``load_unlabeled_images``);
    * the bundle's phantom folder, or a folder in a layout the datalist builder reads (a participants table, an MSD
      ``dataset.json``, MM-WHS names, ``imagesTr``/``labelsTr``): the datalist is built as before
      (``prepare_datalist``) and read;
    * any other folder: the tree is searched recursively (:func:`find_images`, with ``include``/``exclude``).

    Entries without a modality take ``modality``; an entry left with none, or with an unknown one, is an error
    naming the first few.
    """
    source = None
    for candidate in (datalist, dataset_dir):
        if str(candidate).lower().endswith(".csv") and os.path.isfile(str(candidate)):
            source = str(candidate)
    if source is not None:
        base = dataset_dir if os.path.isdir(str(dataset_dir)) else None
        images, where = read_image_csv(source, base), source
    else:
        folder = os.path.abspath(os.path.expanduser(str(dataset_dir)))
        ours = phantom_dir is not None and os.path.abspath(os.path.expanduser(str(phantom_dir))) == folder
        where = folder
        # decided alike on every rank, from the files alone: the datalist preparation and the search both wait for
        # rank 0 in a distributed run
        if os.path.isfile(datalist) or ours or not os.path.isdir(folder) or not os.listdir(folder) or _layout(folder):
            datalist_file = prepare_datalist(dataset_dir, datalist, phantoms, num_phantoms, phantom_dir=phantom_dir)
            return load_unlabeled_images(datalist_file, dataset_dir, modality=modality)
        logger.info(f"{folder} is in no dataset layout: searching it for images")
        images = find_images(folder, bundle_root, include, exclude, modality, report_file=report_file)
    missing = [e["image"] for e in images if not e.get("modality") and not modality]
    if missing:
        raise DatalistError(
            f"{len(missing)} image(s) of {where} have no modality (CT or MRI), e.g. {missing[:3]}: give a 'modality' "
            "column or set the config's default_modality"
        )
    return [{**e, "modality": normalize_modality(e.get("modality") or modality, where)} for e in images]


class SkipUnreadable(Dataset):
    """
    A dataset whose items that fail to load are replaced rather than raised: the failing file is logged once (per
    process), appended to ``report_file``, and another index, drawn from the failing one, is tried instead (at most
    ``max_tries`` in a row, then the error is raised: a pipeline that fails on every image is not a bad file).

    Args:
        dataset: the dataset to wrap; its ``data`` entries name the files (``image_key``).
        report_file: file the skipped images are appended to (path and error, tab-separated), or None.
        max_tries: consecutive failures before the error is raised.
        image_key: the entries' key of the file path.
    """

    def __init__(self, dataset, report_file: str | None = None, max_tries: int = 20, image_key: str = "image"):
        self.dataset = dataset
        self.data = getattr(dataset, "data", None)
        self.report_file = report_file
        self.max_tries = max_tries
        self.image_key = image_key
        self.bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.dataset)

    def _name(self, index: int) -> str:
        try:
            return str(self.data[index][self.image_key])
        except Exception:
            return f"item {index}"

    def __getitem__(self, index: int):
        draw = random.Random(int(index))
        error: Exception | None = None
        for _ in range(self.max_tries):
            if index not in self.bad:
                try:
                    return self.dataset[index]
                except Exception as failure:
                    error = failure
                    self.bad.add(index)
                    reason = str(failure).splitlines()[0] if str(failure) else type(failure).__name__
                    logger.warning(f"skipping {self._name(index)}: it fails to load ({reason})")
                    _write_report(self.report_file, {self._name(index): reason})
            index = draw.randrange(len(self.dataset))
        raise RuntimeError(f"{self.max_tries} images in a row failed to load; the last error: {error}") from error


class UnreadableReport:
    """Lists, at the end of a run (or when it fails), the images in ``report_file`` that were left out or skipped."""

    def __init__(self, report_file: str) -> None:
        self.report_file = report_file

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self.report)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self.report)

    def read(self) -> dict[str, str]:
        if not os.path.isfile(self.report_file):
            return {}
        found: dict[str, str] = {}
        with open(self.report_file) as handle:
            for line in handle:
                path, _, reason = line.rstrip("\n").partition("\t")
                if path:
                    found.setdefault(path, reason)
        return found

    def report(self, engine: Engine, *_) -> None:
        found = self.read()
        if found:
            lines = "\n".join(f"  {path}: {reason}" for path, reason in found.items())
            engine.logger.warning(f"{len(found)} image(s) were left out or skipped ({self.report_file}):\n{lines}")


def training_dataset(
    data: Sequence[Mapping],
    transform,
    cache: str = "memory",
    cache_dir: str | None = None,
    cache_rate: float = 1.0,
    num_workers: int = 4,
    report_file: str | None = None,
):
    """
    The training set: ``cache="memory"`` is MONAI's ``CacheDataset`` (the deterministic transforms of every image
    computed before the first step and held in memory: small sets); ``cache="disk"`` is MONAI's ``PersistentDataset``
    under ``cache_dir`` (each image's deterministic transforms computed on first use and kept on disk, memory
    independent of the corpus), wrapped in :class:`SkipUnreadable`. Both stop caching at the first random transform,
    so the random views are drawn at every step. Remove ``cache_dir`` when the deterministic preprocessing changes.
    """
    if cache == "memory":
        return CacheDataset(data, transform, cache_rate=cache_rate, num_workers=num_workers)
    if cache == "disk":
        if not cache_dir:
            raise ValueError("dataset_cache 'disk' needs a cache_dir")
        os.makedirs(cache_dir, exist_ok=True)
        return SkipUnreadable(PersistentDataset(data, transform, cache_dir=cache_dir), report_file=report_file)
    raise ValueError(f"dataset_cache should be 'memory' or 'disk', not {cache!r}")


class ResumableWeightedSampler(DistributedWeightedRandomSampler):
    """
    MONAI's ``DistributedWeightedRandomSampler`` (a shard per rank, drawn with replacement by ``weights``) whose
    draws depend only on ``seed``, the epoch (``set_epoch``, which MONAI's trainers call at every epoch) and the rank,
    so an epoch's batches are the same in a resumed run. Attached to the trainer (put it in its handlers), it skips,
    in the first epoch of a run resumed mid-epoch, the batches already done before the checkpoint (the trainer's
    ``iteration`` modulo ``epoch_length``), so the run goes on with the batches an uninterrupted run would have seen.
    Outside a distributed run it is one shard of every image.
    """

    def __init__(
        self,
        dataset,
        weights: Sequence[float],
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        even_divisible: bool = True,
    ) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if distributed else 1
        if rank is None:
            rank = dist.get_rank() if distributed else 0
        super().__init__(
            dataset=dataset,
            weights=weights,
            even_divisible=even_divisible,
            num_replicas=num_replicas,
            rank=rank,
            shuffle=True,
            seed=seed,
        )
        self.skip = 0  # samples to leave out at the start of the next pass (a resumed epoch)

    def __iter__(self):
        shard = list(torch.utils.data.DistributedSampler.__iter__(self))
        weights = torch.as_tensor([self.weights[i] for i in shard], dtype=torch.double)
        generator = torch.Generator()
        generator.manual_seed(((int(self.seed) * 1_000_003 + int(self.epoch)) * 1_009 + int(self.rank)) % 2**63)
        drawn = torch.multinomial(weights, self.num_samples_per_rank, True, generator=generator)
        skip, self.skip = self.skip, 0
        return iter([shard[i] for i in drawn.tolist()][skip:])

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._resume)

    def _resume(self, engine: Engine) -> None:
        length = engine.state.epoch_length
        done = engine.state.iteration % length if length else 0
        loader = engine.state.dataloader
        self.skip = done * int(getattr(loader, "batch_size", None) or 1)
        if done:
            engine.logger.info(f"resuming epoch {engine.state.epoch + 1} at its batch {done + 1} of {length}")


class MidEpochResume:
    """The trainer handler of a :class:`ResumableWeightedSampler` (a config's handler list takes ``_target_`` items)."""

    def __init__(self, sampler: ResumableWeightedSampler) -> None:
        self.sampler = sampler

    def attach(self, engine: Engine) -> None:
        self.sampler.attach(engine)
