"""Build MONAI datalist JSON files from the dataset layouts the bundles train on.

Bundles read the result with ``monai.data.load_decathlon_datalist(path, data_list_key=..., base_dir=...)``.
Folds and few-label subsets are fixed once (:mod:`xlstm_monai.data.folds`), so every experiment on a dataset compares
like with like: they depend only on the case ids and the seed, never on file system order.

Layouts (:mod:`xlstm_monai.data.layouts`): MM-WHS folders, MSD task folders (``dataset.json``), paired ``imagesTr/`` +
``labelsTr/`` folders, plain folders of unlabeled images; and CSV participant tables for classification
(:mod:`xlstm_monai.data.participants`). Their public names are importable from here too.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from xlstm_monai.data.folds import apply_label_fraction, assign_folds, fold_split
from xlstm_monai.data.label_codes import MMWHS_LABELS
from xlstm_monai.data.layouts import (
    _MMWHS_NAME,
    IMAGE_SUFFIXES,
    _as_list,
    _image_files,
    _split_suffix,
    normalize_modality,
    read_msd,
    scan_images,
    scan_mmwhs,
    scan_paired,
)
from xlstm_monai.data.participants import read_participants_csv

__all__ = [
    "IMAGE_SUFFIXES",
    "KINDS",
    "normalize_modality",
    "scan_mmwhs",
    "read_msd",
    "scan_paired",
    "scan_images",
    "read_participants_csv",
    "assign_folds",
    "apply_label_fraction",
    "build_datalist",
    "fold_split",
]

KINDS: tuple[str, ...] = ("auto", "mmwhs", "msd", "paired", "images", "csv")
LIST_KEYS: tuple[str, ...] = ("training", "unlabeled", "testing")


def _detect_kind(source: Path) -> str:
    """Layout of ``source``: dataset.json -> msd, *.csv -> csv, MM-WHS names -> mmwhs, imagesTr+labelsTr -> paired."""
    if source.is_file():
        suffix = source.suffix.lower()
        if suffix in (".csv", ".json"):
            return "csv" if suffix == ".csv" else "msd"
        raise ValueError(f"cannot tell the layout of file {source}: expected a .csv table or an MSD dataset.json")
    if (source / "dataset.json").is_file():
        return "msd"
    if any(_MMWHS_NAME.match(_split_suffix(p.name)[0]) for p in _image_files(source)):
        return "mmwhs"
    if (source / "imagesTr").is_dir() and (source / "labelsTr").is_dir():
        return "paired"
    return "images"


def _unlabeled_folders(unlabeled, modality: str | None) -> list[tuple[str, str]]:
    """(folder, modality) pairs from ``"path"`` / ``"path:CT"`` specs; the tag after the last colon is optional."""
    specs = []
    for spec in _as_list(unlabeled):
        folder, _, tag = spec.rpartition(":")
        if not folder or len(folder) == 1 or "/" in tag or "\\" in tag:  # no tag, or a Windows drive letter
            folder, tag = spec, ""
        tag = tag or modality
        if not tag:
            raise ValueError(f"unlabeled folder {spec!r} needs a modality: write {spec}:CT or {spec}:MRI")
        specs.append((folder, normalize_modality(tag, f"unlabeled folder {spec!r}")))
    return specs


def _relative(path, base_dir: str):
    """Path (or list of paths) relative to ``base_dir``, with forward slashes, as the JSON stores it."""
    if isinstance(path, (list, tuple)):
        return [_relative(p, base_dir) for p in path]
    return Path(os.path.relpath(os.path.abspath(path), base_dir)).as_posix()


def _entry(case: dict, base_dir: str, keys: Sequence[str]) -> dict:
    """One JSON entry with the given keys (those present), image/label paths made relative."""
    out = {}
    for key in keys:
        if key in case:
            is_path = key == "image" or (key == "label" and isinstance(case[key], (str, list)))
            out[key] = _relative(case[key], base_dir) if is_path else case[key]
    return out


def _summary(key: str, entries: Sequence[dict]) -> str:
    """One line: count, counts per fold, per modality and (classification) per class."""
    parts = [f"{key}: {len(entries)}"]
    for field, title in (("fold", "folds"), ("modality", "modality"), ("label_name", "classes")):
        counts = Counter(e[field] for e in entries if field in e)
        if counts:
            parts.append(f"{title} " + " ".join(f"{k}:{counts[k]}" for k in sorted(counts)))
    return " | ".join(parts)


def _read_source(kind: str, source: Path, modality, target, classes, image_column, id_column, images_dir):
    """(labeled cases, testing images, labels metadata, name) for one layout; an empty scan raises."""
    if kind == "mmwhs":
        labeled, testing = scan_mmwhs(source)
        return labeled, testing, {str(code): name for name, code in MMWHS_LABELS.items()}, "MM-WHS"
    if kind == "msd":
        labeled, testing = read_msd(source, modality=modality)
        json_path = source / "dataset.json" if source.is_dir() else source
        dataset = json.loads(json_path.read_text())
        return labeled, testing, dataset.get("labels"), dataset.get("name") or json_path.parent.name
    if kind == "paired":
        cases = scan_paired(source, modality=modality or "MRI")
        testing = [c for c in cases if "label" not in c]
        if (source / "imagesTs").is_dir() and _image_files(source / "imagesTs"):
            testing += scan_images(source / "imagesTs", modality or "MRI")
        return [c for c in cases if "label" in c], testing, None, source.name
    if kind == "csv":
        if not target or classes is None:
            raise ValueError(f"a CSV datalist needs target= (a column of {source.name}) and classes= (e.g. 'F,M')")
        labeled = read_participants_csv(
            source, target, classes, image_column, id_column, images_dir, modality=modality or "MRI"
        )
        labels = {str(i): name for i, name in enumerate(_as_list(classes))}
        return labeled, [], labels, source.stem
    raise ValueError(f"unknown kind {kind!r}: expected one of {', '.join(KINDS)}")


def build_datalist(
    source: str,
    output: str,
    kind: str = "auto",
    num_folds: int = 5,
    fold: int = 0,
    seed: int = 0,
    label_fraction: float = 1.0,
    base_dir: str | None = None,
    modality: str | None = None,
    target: str | None = None,
    classes: list[str] | str | None = None,
    image_column: str | None = None,
    id_column: str | None = None,
    images_dir: str | None = None,
    unlabeled: list[str] | str | None = None,
) -> dict:
    """Scan ``source``, assign folds, apply the label fraction and write the datalist JSON to ``output``.

    ``kind`` is ``"auto"`` or one of mmwhs, msd, paired, images, csv. Labeled cases go to ``training`` (with
    ``fold``), images without labels to ``testing``, and few-label moves plus ``unlabeled`` folders
    (``"path"`` or ``"path:CT"``) to ``unlabeled``. A plain ``images`` folder is all ``unlabeled``, with folds.
    Paths are stored relative to ``base_dir`` (default: the scanned folder). Prints one summary line per list.
    """
    source_path = Path(os.path.abspath(os.path.expanduser(str(source))))
    if not source_path.exists():
        raise FileNotFoundError(f"datalist source not found: {source_path}")
    kind = str(kind).strip().lower()
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: expected one of {', '.join(KINDS)}")
    if kind == "auto":
        kind = _detect_kind(source_path)
    root = source_path if source_path.is_dir() else source_path.parent
    base = os.path.abspath(os.path.expanduser(str(base_dir))) if base_dir else str(root)
    fold = int(fold)
    if not 0 <= fold < int(num_folds):
        raise ValueError(f"fold {fold} is outside 0..{int(num_folds) - 1} for num_folds={num_folds}")

    extra = [c for folder, tag in _unlabeled_folders(unlabeled, modality) for c in scan_images(folder, tag)]
    if kind == "images":
        if not modality:
            raise ValueError(f"kind 'images' ({source_path}) needs modality='CT' or 'MRI'")
        training, testing, labels, name = [], [], None, source_path.name
        moved = assign_folds(scan_images(source_path, modality), num_folds, seed)
    else:
        labeled, testing, labels, name = _read_source(
            kind, source_path, modality, target, classes, image_column, id_column, images_dir
        )
        stratify = "label" if kind == "csv" else "modality"
        training, moved = [], []
        if labeled:
            folded = assign_folds(labeled, num_folds, seed, stratify_key=stratify)
            training, moved = apply_label_fraction(folded, label_fraction, fold, seed, stratify_key=stratify)

    datalist = {
        "name": name,
        "description": (
            f"{kind} datalist: {int(num_folds)} folds (seed {int(seed)}), validation fold {fold}, "
            f"label fraction {float(label_fraction):g}"
        ),
        "source": str(source_path),
        "kind": kind,
        "num_folds": int(num_folds),
        "fold": fold,
        "seed": int(seed),
        "label_fraction": float(label_fraction),
        "base_dir": base,
        **({"labels": labels} if labels else {}),
        "training": [_entry(c, base, ("image", "label", "label_name", "modality", "fold")) for c in training],
        "unlabeled": [_entry(c, base, ("image", "modality", "fold")) for c in moved + extra],
        "testing": [_entry(c, base, ("image", "modality")) for c in testing],
    }
    if not any(datalist[key] for key in LIST_KEYS):
        raise ValueError(f"no cases found in {source_path} ({kind})")
    out_path = Path(os.path.abspath(os.path.expanduser(str(output))))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(datalist, indent=2) + "\n")
    for key in LIST_KEYS:
        print(_summary(key, datalist[key]))
    return datalist
