"""
Dataset layouts the bundles train on, read into cases: MM-WHS folders, MSD task folders (``dataset.json``), paired
``imagesTr/`` + ``labelsTr/`` folders and plain folders of unlabeled images; and the small helpers the datalist
modules share.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

__all__ = ["IMAGE_SUFFIXES", "normalize_modality", "read_msd", "scan_images", "scan_mmwhs", "scan_paired"]

# Longest first, so ".nii.gz" wins over ".gz"-less ".nii" when stripping.
IMAGE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".mha")

_MMWHS_NAME = re.compile(r"^(?P<modality>ct|mr)_(?P<split>[a-z]+)_(?P<number>\d+)_(?P<role>image|label)$", re.I)
_MMWHS_MODALITY = {"ct": "CT", "mr": "MRI"}
_CT_NAMES = {"CT", "CTA", "CECT", "NCCT", "CBCT"}
_MRI_NAMES = {"MRI", "MR", "NMR", "FLAIR", "ADC", "DWI", "DTI", "PD", "SSFP", "CINE", "BOLD", "SWI"}
_MRI_PREFIXES = ("MR", "T1", "T2")


def normalize_modality(value, where: str = "") -> str:
    """Map a modality tag (``"MR"``, ``"T1w"``, ``"ct"``, ...) to ``"CT"`` or ``"MRI"``, the two tags bundles use."""
    text = str(value).strip().upper().replace("-", "").replace(" ", "").replace("_", "")
    if text in _CT_NAMES:
        return "CT"
    if text in _MRI_NAMES or text.startswith(_MRI_PREFIXES):
        return "MRI"
    context = f" in {where}" if where else ""
    raise ValueError(f"unknown modality {value!r}{context}: expected CT or MRI (MR, T1, T2, FLAIR, ... mean MRI)")


def _split_suffix(name: str) -> tuple[str, str] | None:
    """Split an image file name into (stem, suffix), or None when it is not an image file we read."""
    if name.startswith("."):  # hidden files, e.g. macOS "._x.nii.gz" resource forks
        return None
    lower = name.lower()
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    return None


def _existing_dir(folder, what: str) -> Path:
    """Absolute path of a folder that must exist; FileNotFoundError naming it otherwise."""
    path = Path(os.path.abspath(os.path.expanduser(str(folder))))
    if not path.is_dir():
        raise FileNotFoundError(f"{what} folder not found: {path}")
    return path


def _image_files(folder: Path) -> list[Path]:
    """All image files below ``folder``, sorted, so results never depend on file system order."""
    return sorted(p for p in folder.rglob("*") if _split_suffix(p.name) is not None and p.is_file())


def _problems(message: str, problems: Sequence[str]) -> str:
    """One error message listing every problem on its own line."""
    return message + ":\n" + "\n".join(f"  {p}" for p in problems)


def _first(value):
    """First path of a multi-channel image entry (a list), or the path itself."""
    return value[0] if isinstance(value, (list, tuple)) and value else value


def _as_list(value) -> list[str]:
    """A list of strings from a list, a tuple or a comma-separated string (as python-fire passes them)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.strip().strip("[]()")
        return [v.strip().strip("'\"") for v in value.split(",") if v.strip()]
    return [str(v).strip() for v in value]


def scan_mmwhs(folder) -> tuple[list[dict], list[dict]]:
    """Pair MM-WHS ``<ct|mr>_<split>_<n>_image`` / ``_label`` files below ``folder`` by case stem.

    Returns (labeled cases ``{"image", "label", "modality"}``, images without a label ``{"image", "modality"}``),
    with absolute paths, sorted by case. A label without its image is an error, so no label is silently dropped.
    """
    root = _existing_dir(folder, "MM-WHS")
    found: dict[tuple[str, str], list[Path]] = {}
    for path in _image_files(root):
        match = _MMWHS_NAME.match(_split_suffix(path.name)[0])
        if match is None:
            continue
        stem = "_".join(match.group("modality", "split", "number")).lower()
        found.setdefault((stem, match.group("role").lower()), []).append(path)
    if not found:
        raise ValueError(
            f"no MM-WHS files found below {root}: expected names like ct_train_1001_image.nii.gz and "
            f"ct_train_1001_label.nii.gz (suffixes {', '.join(IMAGE_SUFFIXES)})"
        )
    problems = [
        f"{stem} {role}: several files {', '.join(str(p) for p in paths)}"
        for (stem, role), paths in sorted(found.items())
        if len(paths) > 1
    ]
    problems += [
        f"label without image: {paths[0]}"
        for (stem, role), paths in sorted(found.items())
        if role == "label" and (stem, "image") not in found
    ]
    if problems:
        raise ValueError(_problems(f"MM-WHS folder {root} is inconsistent", problems))
    labeled, unlabeled = [], []
    for (stem, role), paths in sorted(found.items()):
        if role != "image":
            continue
        case = {"image": str(paths[0]), "modality": _MMWHS_MODALITY[stem.split("_")[0]]}
        label = found.get((stem, "label"))
        if label:
            labeled.append({"image": case["image"], "label": str(label[0]), "modality": case["modality"]})
        else:
            unlabeled.append(case)
    return labeled, unlabeled


def _msd_modality(dataset: dict, json_path: Path) -> str:
    """One modality tag for an MSD task; its ``modality`` is a dict by channel (``{"0": "T2", "1": "ADC"}``)."""
    raw = dataset.get("modality")
    if raw is None:
        raise ValueError(f"{json_path} has no 'modality': pass modality='CT' or 'MRI'")
    values = list(raw.values()) if isinstance(raw, dict) else _as_list(raw) if isinstance(raw, str) else list(raw)
    tags = {normalize_modality(v, str(json_path)) for v in values}
    if len(tags) != 1:
        raise ValueError(f"{json_path} mixes modalities {sorted(tags)}: pass modality='CT' or 'MRI'")
    return tags.pop()


def _msd_path(value, root: Path) -> str | list[str]:
    """Absolute path(s) of an MSD entry given relative to the task folder (``"./imagesTr/x.nii.gz"``)."""
    if isinstance(value, (list, tuple)):
        return [_msd_path(v, root) for v in value]
    return os.path.normpath(os.path.join(root, str(value)))


def _missing(paths) -> list[str]:
    """Paths (single or multi-channel) that do not exist."""
    flat = paths if isinstance(paths, list) else [paths]
    return [p for p in flat if not os.path.exists(p)]


def read_msd(folder_or_dataset_json, modality: str | None = None) -> tuple[list[dict], list[dict]]:
    """Read an MSD task's ``dataset.json`` as (training ``{"image", "label", "modality"}``, test ``{"image", ...}``).

    Paths become absolute and must exist; ``modality`` overrides the task's own tag.
    """
    path = Path(os.path.abspath(os.path.expanduser(str(folder_or_dataset_json))))
    json_path = path / "dataset.json" if path.is_dir() else path
    if not json_path.is_file():
        raise FileNotFoundError(f"MSD dataset.json not found: {json_path}")
    try:
        dataset = json.loads(json_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{json_path} is not valid JSON: {error}") from error
    root = json_path.parent
    tag = normalize_modality(modality, "modality argument") if modality else _msd_modality(dataset, json_path)
    training, test, problems = [], [], []
    for key in ("training", "test"):
        if not isinstance(dataset.get(key, []), list):
            raise ValueError(f"{json_path}: '{key}' must be a list")
    for index, entry in enumerate(dataset.get("training", [])):
        if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
            problems.append(f"training[{index}] needs 'image' and 'label': {entry!r}")
            continue
        training.append({"image": _msd_path(entry["image"], root), "label": _msd_path(entry["label"], root)})
    for index, entry in enumerate(dataset.get("test", [])):
        image = entry.get("image") if isinstance(entry, dict) else entry
        if not image:
            problems.append(f"test[{index}] has no image: {entry!r}")
            continue
        test.append({"image": _msd_path(image, root)})
    if problems:
        raise ValueError(_problems(f"MSD task {json_path} has malformed entries", problems))
    for case in training + test:
        problems += [f"missing file {p}" for key in ("image", "label") if key in case for p in _missing(case[key])]
        case["modality"] = tag
    if problems:
        raise FileNotFoundError(_problems(f"MSD task {json_path} lists files that do not exist", problems))
    if not training and not test:
        raise ValueError(f"{json_path} lists no 'training' or 'test' cases")
    return training, test


def scan_paired(folder, images: str = "imagesTr", labels: str = "labelsTr", modality: str = "MRI") -> list[dict]:
    """Pair ``folder/images`` with ``folder/labels`` by identical relative file name.

    Returns cases sorted by name with absolute paths; an image without a label comes back without a ``"label"``
    key (build_datalist lists it under ``testing``). A label without its image is an error.
    """
    root = _existing_dir(folder, "paired dataset")
    image_dir = _existing_dir(root / images, "images")
    label_dir = _existing_dir(root / labels, "labels")
    tag = normalize_modality(modality, "modality argument")
    image_files = {p.relative_to(image_dir).as_posix(): p for p in _image_files(image_dir)}
    label_files = {p.relative_to(label_dir).as_posix(): p for p in _image_files(label_dir)}
    if not image_files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found below {image_dir}")
    orphans = [str(label_files[name]) for name in sorted(set(label_files) - set(image_files))]
    if orphans:
        raise ValueError(_problems(f"labels without an image of the same name in {image_dir}", orphans))
    cases = []
    for name, image in sorted(image_files.items()):
        case = {"image": str(image)}
        if name in label_files:
            case["label"] = str(label_files[name])
        case["modality"] = tag
        cases.append(case)
    return cases


def scan_images(folder, modality) -> list[dict]:
    """Every image file below ``folder`` as ``{"image", "modality"}``, sorted; for self-supervised pretraining."""
    root = _existing_dir(folder, "images")
    tag = normalize_modality(modality, "modality argument")
    files = _image_files(root)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found below {root}")
    return [{"image": str(p), "modality": tag} for p in files]
