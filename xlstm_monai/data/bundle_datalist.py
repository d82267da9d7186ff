"""
The datalist of a bundle run: where it is, how it is made on first use, and the training and validation sets it
gives, from a datalist file in any of the forms users have:

* MONAI's standard datalist (the model zoo's ``dataset_0.json``): ``training`` plus an optional ``validation``
  (and ``test``) section; when ``validation`` is present it is the validation set;
* an MSD ``dataset.json``: ``training`` of image/label pairs and no validation set;
* the project's fold datalists (``xlstm-monai datalist``): ``training`` entries carrying ``fold``.

Without a validation section, folds are used when present; otherwise every case gets a fold from a hash of its
path (seed 0, the datalist builder's rule), so the split is reproducible on any machine. ``fold`` selects. Entries
are read with MONAI's ``load_decathlon_datalist``; its ``datafold_read`` takes fold datalists only.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence

import torch.distributed as dist
import yaml
from monai.data import load_decathlon_datalist

from .datalist import assign_folds, build_datalist, fold_split

__all__ = [
    "DatalistError",
    "datalist_split",
    "default_datalist",
    "input_files",
    "output_name_formatter",
    "output_stem",
    "prepare_datalist",
    "read_datalist_file",
]

logger = logging.getLogger(__name__)

FORMS = (
    "a MONAI datalist ({'training': [...], 'validation': [...]}), an MSD dataset.json, or a fold datalist from "
    "`xlstm-monai datalist`"
)


class DatalistError(ValueError):
    """A datalist file that cannot be used; the message is one line naming the file."""


def read_datalist_file(path: str | os.PathLike) -> dict:
    """
    The datalist at ``path`` (JSON, or YAML for ``.yaml``/``.yml``) as a dict. A missing file, malformed JSON or YAML
    (with the line and column), or a top level that is not a mapping raises :class:`DatalistError` naming the file.
    """
    path = os.path.abspath(os.path.expanduser(str(path)))
    if not os.path.isfile(path):
        raise DatalistError(f"datalist {path} does not exist")
    with open(path) as handle:
        text = handle.read()
    try:
        if path.lower().endswith((".yaml", ".yml")):
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except json.JSONDecodeError as error:
        raise DatalistError(
            f"datalist {path} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise DatalistError(f"datalist {path} is not valid YAML: {getattr(error, 'problem', error)}{where}") from None
    if not isinstance(data, dict):
        raise DatalistError(f"datalist {path} holds a {type(data).__name__}, expected {FORMS}")
    return data


def _section(path: str, data: dict, key: str, is_segmentation: bool, base_dir: str) -> list[dict]:
    entries = data.get(key)
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "image" in e for e in entries):
        raise DatalistError(f"datalist {path}: '{key}' should be a list of entries with an 'image', expected {FORMS}")
    if is_segmentation and any("label" not in e for e in entries):
        missing = next(e["image"] for e in entries if "label" not in e)
        raise DatalistError(f"datalist {path}: '{key}' entry {missing} has no 'label'")
    return load_decathlon_datalist(path, is_segmentation=is_segmentation, data_list_key=key, base_dir=base_dir)


def datalist_split(
    datalist: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    fold: int = 0,
    num_folds: int = 5,
    is_segmentation: bool = True,
) -> dict[str, list[dict]]:
    """
    ``{"train": [...], "val": [...]}`` of a datalist file (see the module docstring for the accepted forms), paths
    joined to ``dataset_dir`` as ``monai.data.load_decathlon_datalist`` does.

    Args:
        datalist: the datalist file.
        dataset_dir: the folder its relative paths start from.
        fold: validation fold, when the split comes from folds.
        num_folds: folds to assign when the datalist has neither a validation section nor folds.
        is_segmentation: entries need a "label" file (False: classification, the label is a class).
    """
    path = os.path.abspath(os.path.expanduser(str(datalist)))
    data = read_datalist_file(path)
    if not data.get("training"):
        raise DatalistError(f"datalist {path} has no 'training' list, expected {FORMS}")
    training = _section(path, data, "training", is_segmentation, str(dataset_dir))
    if data.get("validation"):
        validation = _section(path, data, "validation", is_segmentation, str(dataset_dir))
        logger.info(
            f"datalist {path}: {len(training)} training cases, validation: its 'validation' section "
            f"({len(validation)} cases)"
        )
        return {"train": training, "val": validation}
    try:
        if not any("fold" in e for e in training):
            training = assign_folds(training, num_folds, seed=0)
            logger.info(
                f"datalist {path} has no 'validation' section or folds: validation is fold {fold} of "
                f"{num_folds} assigned from the case paths (seed 0)"
            )
        return {"train": fold_split(training, fold, "train"), "val": fold_split(training, fold, "val")}
    except ValueError as error:
        raise DatalistError(f"datalist {path}: {error}") from None


def default_datalist(bundle_root: str | os.PathLike, dataset_dir: str | os.PathLike) -> str:
    """
    Where a bundle keeps the datalist it builds for ``dataset_dir`` when the user gives none:
    ``bundle_root/data/datalists/<folder name>_<hash of its path>.json``, one per dataset folder, so a datalist
    built for one dataset is never read for another and nothing is written into the user's data folder.
    """
    folder = os.path.abspath(os.path.expanduser(str(dataset_dir)))
    digest = hashlib.sha1(folder.encode()).hexdigest()[:8]
    name = os.path.basename(folder.rstrip(os.sep)) or "data"
    return os.path.join(str(bundle_root), "data", "datalists", f"{name}_{digest}.json")


def _built_for(datalist: str) -> str | None:
    """The dataset folder a datalist built by ``build_datalist`` starts its paths from; None for other datalists."""
    try:
        data = read_datalist_file(datalist)
    except DatalistError:
        return None  # the split reports it, naming the file
    if "base_dir" in data:
        return os.path.abspath(str(data["base_dir"]))
    return None


def prepare_datalist(
    dataset_dir: str,
    datalist: str,
    phantoms: str = "heart_ct",
    num_phantoms: int = 12,
    num_folds: int = 3,
    seed: int = 0,
    phantom_dir: str | None = None,
    shape: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    **datalist_args,
) -> str:
    """
    The datalist a bundle run reads; returns its path. In a distributed run rank 0 writes while the others wait.

    * ``datalist`` exists: it is used as is (one the builder wrote for another folder is an error naming both);
    * ``dataset_dir`` holds a dataset in a layout the datalist builder reads (MM-WHS names, an MSD
      ``dataset.json``, paired ``imagesTr``/``labelsTr`` folders, a CSV participants table): the datalist is built
      from it, with folds;
    * ``dataset_dir`` is the bundle's own phantom folder (``phantom_dir``) and absent or empty: phantoms of the
      bundle's kind are written there, in the same real layouts, and the datalist is built from them.

    Any other ``dataset_dir`` that does not exist, is empty or holds nothing the builder reads is an error naming
    it: phantoms never stand in for a user's data.

    Args:
        dataset_dir: the dataset folder (the datalist's paths are relative to it).
        datalist: the datalist file.
        phantoms: phantom kind of the bundle, one of ``PHANTOM_KINDS``.
        num_phantoms: phantom cases (per modality for "heart_ct_mr").
        num_folds, seed: folds of a built datalist.
        phantom_dir: the bundle's own default data folder, the only place phantoms are written.
        shape, spacing: phantom size; the kind's default when None.
        datalist_args: further ``build_datalist`` arguments (e.g. ``target`` and ``classes`` for a CSV).
    """
    from xlstm_monai.phantoms import PHANTOM_KINDS, write_phantoms  # phantoms are written here only

    folder = os.path.abspath(os.path.expanduser(str(dataset_dir)))
    if os.path.isfile(datalist):
        built_for = _built_for(datalist)
        if built_for is not None and built_for != folder:
            raise DatalistError(
                f"datalist {datalist} was built for {built_for}, not for dataset_dir {folder}: "
                "pass the datalist of this dataset, or remove the file to rebuild it"
            )
        return datalist
    if phantoms not in PHANTOM_KINDS:
        raise ValueError(f"unknown phantom kind {phantoms!r}; choose from {PHANTOM_KINDS}")
    ours = phantom_dir is not None and os.path.abspath(os.path.expanduser(str(phantom_dir))) == folder
    has_files = os.path.isdir(folder) and bool(os.listdir(folder))
    if not has_files and not ours:
        state = "is empty" if os.path.isdir(folder) else "does not exist"
        raise FileNotFoundError(
            f"dataset_dir {folder} {state}: point dataset_dir at your dataset (or run without "
            "dataset_dir to use the bundle's generated phantoms)"
        )
    distributed = dist.is_available() and dist.is_initialized()
    if not distributed or dist.get_rank() == 0:
        if not has_files:
            logger.info(f"writing {num_phantoms} generated {phantoms} phantoms into {folder}")
            os.makedirs(folder, exist_ok=True)
            write_phantoms(phantoms, folder, num_phantoms, shape, spacing, seed)
            if phantoms == "brain":
                datalist_args = {"target": "Diagnosis", "classes": "CN,AD", **datalist_args}
        table = os.path.join(folder, "participants.csv")  # a classification folder is read from its table
        source = table if os.path.isfile(table) else folder
        try:
            build_datalist(source, datalist, num_folds=num_folds, seed=seed, base_dir=folder, **datalist_args)
        except (FileNotFoundError, ValueError) as error:
            raise DatalistError(
                f"dataset_dir {folder} holds no dataset a datalist can be built from: {error}"
            ) from None
    if distributed:
        dist.barrier()
    return datalist


def input_files(dataset_dir: str | os.PathLike, pattern: str = "*.nii.gz") -> list:
    """
    What inference reads in ``dataset_dir``: the files that ``pattern`` (a glob) matches, sorted, and every DICOM
    series below it, each as one volume (``{"image": folder, "series_uid": ...}``; a series a 3D bundle cannot read
    as a volume comes with the reason as ``"problem"`` and is listed, not read). An error names the folder when it
    does not exist or holds neither.
    """
    from .dicom import find_dicom_series, is_dicom_folder

    folder = os.path.abspath(os.path.expanduser(str(dataset_dir)))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"dataset_dir {folder} does not exist")
    matches = glob.glob(os.path.join(folder, pattern), recursive=True)
    entries: list = sorted(p for p in matches if os.path.isfile(p) and not p.lower().endswith(".dcm"))
    if is_dicom_folder(folder):
        entries += [_series_entry(series) for series in find_dicom_series(folder)]
    if not entries:
        raise FileNotFoundError(f"no file in dataset_dir {folder} matches input_pattern {pattern!r}, nor is it DICOM")
    return entries


def _series_entry(series) -> dict:
    """A series as LoadImaged reads it: its own folder when it fills it, else a folder of links to its files."""
    if series.problem is not None:
        return {"image": os.path.dirname(series.files[0]), "problem": f"{series.name} {series.problem}"}
    folder = os.path.dirname(series.files[0])
    own = set(series.files)
    others = [f for f in os.listdir(folder) if f.lower().endswith(".dcm") and os.path.join(folder, f) not in own]
    if others or any(os.path.dirname(f) != folder for f in series.files):
        sources = hashlib.sha1("\n".join(map(os.path.abspath, series.files)).encode()).hexdigest()[:8]
        folder = os.path.join(tempfile.gettempdir(), "xlstm_monai_series", sources, series.uid)
        os.makedirs(folder, exist_ok=True)
        for path in series.files:
            link = os.path.join(folder, os.path.basename(path))
            if not os.path.lexists(link):
                os.symlink(os.path.abspath(path), link)
    return {"image": folder, "series_uid": series.uid}


def output_stem(path: str | os.PathLike, dataset_dir: str | os.PathLike) -> str:
    """
    The name an input's results are saved under: its path relative to ``dataset_dir`` with folders joined by "_"
    and the image suffix dropped (``p1/ct.nii.gz`` -> ``p1_ct``), so inputs of per-patient folders never overwrite
    each other; a DICOM series folder keeps its folder's name, a series gathered from mixed files its UID.
    """
    path, root = os.path.abspath(str(path)), os.path.abspath(str(dataset_dir))
    relative = os.path.relpath(path, root) if path.startswith(root + os.sep) else os.path.basename(path)
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".dcm"):
        if relative.lower().endswith(suffix):
            relative = relative[: -len(suffix)]
            break
    return relative.replace(os.sep, "_") or os.path.basename(root)


def output_name_formatter(dataset_dir: str | os.PathLike):
    """A ``SaveImaged(output_name_formatter=...)`` that names results by :func:`output_stem`."""

    def formatter(metadict: dict, saver) -> dict:
        source = str(metadict.get("filename_or_obj", "")) if metadict else ""
        # FolderLayout drops the last suffix of the subject: give it one to drop (a UID is full of dots)
        return {"subject": f"{output_stem(source, dataset_dir)}.img", "idx": metadict.get("patch_index")}

    return formatter
