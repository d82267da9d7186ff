"""Build MONAI datalist JSON files from the dataset layouts the bundles train on.

Bundles read the result with ``monai.data.load_decathlon_datalist(path, data_list_key=..., base_dir=...)``.
Folds and few-label subsets are fixed here, once, so every experiment on a dataset compares like with like:
they depend only on the case ids and the seed, never on file system order.

Layouts: MM-WHS folders, MSD task folders (``dataset.json``), paired ``imagesTr/`` + ``labelsTr/`` folders,
plain folders of unlabeled images and CSV participant tables for classification.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from xlstm_monai.data.label_codes import MMWHS_LABELS

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

# Longest first, so ".nii.gz" wins over ".gz"-less ".nii" when stripping.
IMAGE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".mha")
KINDS: tuple[str, ...] = ("auto", "mmwhs", "msd", "paired", "images", "csv")
LIST_KEYS: tuple[str, ...] = ("training", "unlabeled", "testing")

_MMWHS_NAME = re.compile(r"^(?P<modality>ct|mr)_(?P<split>[a-z]+)_(?P<number>\d+)_(?P<role>image|label)$", re.I)
_MMWHS_MODALITY = {"ct": "CT", "mr": "MRI"}
_CT_NAMES = {"CT", "CTA", "CECT", "NCCT", "CBCT"}
_MRI_NAMES = {"MRI", "MR", "NMR", "FLAIR", "ADC", "DWI", "DTI", "PD", "SSFP", "CINE", "BOLD", "SWI"}
_MRI_PREFIXES = ("MR", "T1", "T2")
_TRAIN_ROLES = {"train", "training"}
_VAL_ROLES = {"val", "valid", "validation"}
# Column names tried, in order, when the caller names neither an image nor an ID column.
_IMAGE_COLUMNS = ("image", "image_path", "path", "file", "filename", "filepath")
_ID_COLUMNS = ("id", "mrid", "participant_id", "subject_id", "subject", "subjectid", "ptid", "case_id")


# ---------------------------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------------------------


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


def _rank(seed: int, salt: str, case_id: str) -> str:
    """Reproducible pseudo-random rank of a case: same seed and id, same rank, on any machine or library version."""
    return hashlib.sha256(f"{int(seed)}|{salt}|{case_id}".encode()).hexdigest()


def _case_ids(cases: Sequence[dict]) -> list[str]:
    """Ids of cases: image path relative to the folder all images share, so moving the dataset keeps its folds."""
    images = [os.path.abspath(str(_first(c["image"]))) for c in cases]
    if not images:
        return []
    root = os.path.commonpath([os.path.dirname(p) for p in images])
    ids = [Path(os.path.relpath(p, root)).as_posix() for p in images]
    duplicates = sorted(i for i, n in Counter(ids).items() if n > 1)
    if duplicates:
        raise ValueError(_problems("the same image is listed by more than one case", duplicates))
    return ids


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


# ---------------------------------------------------------------------------------------------------------------
# layouts
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# CSV participant tables
# ---------------------------------------------------------------------------------------------------------------


def _read_csv_rows(csv_path: Path) -> tuple[list[str], list[dict]]:
    """Header and rows of a CSV (BOM tolerated), values stripped."""
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        reader.fieldnames = header
        rows = [{k: (v or "").strip() if isinstance(v, str) else "" for k, v in row.items()} for row in reader]
    if not header:
        raise ValueError(f"{csv_path} is empty: expected a header row")
    return header, rows


def _pick_column(header: Sequence[str], wanted: str | None, candidates: Sequence[str]) -> str | None:
    """The caller's column or the first known candidate present (case-insensitive)."""
    by_lower = {h.lower(): h for h in header}
    if wanted is not None:
        return by_lower.get(str(wanted).lower())
    return next((by_lower[c] for c in candidates if c in by_lower), None)


def _id_matches(case_id: str, files: Sequence[Path]) -> list[Path]:
    """Files whose name starts with ``case_id`` followed by a separator or the suffix (IXI012 is not IXI0120)."""
    matches = []
    for path in files:
        stem = _split_suffix(path.name)[0]
        if stem == case_id or (stem.startswith(case_id) and not stem[len(case_id)].isalnum()):
            matches.append(path)
    return matches


def read_participants_csv(
    csv_path,
    target,
    classes,
    image_column=None,
    id_column=None,
    images_dir=None,
    modality: str = "MRI",
) -> list[dict]:
    """Classification cases ``{"image", "label": class index, "label_name", "modality"}`` from a participants table.

    The image comes from ``image_column`` (a path relative to ``images_dir``, default the CSV's folder) or from
    ``id_column`` (the prefix of a file name in ``images_dir``, default ``<csv folder>/images`` when it exists).
    Without either, common names (``image``, ``path``, ... then ``id``, ``MRID``, ``participant_id``, ...) are tried.
    Every bad row is reported at once, with its 1-based row number (the header is row 1).
    """
    csv_file = Path(os.path.abspath(os.path.expanduser(str(csv_path))))
    if not csv_file.is_file():
        raise FileNotFoundError(f"participants CSV not found: {csv_file}")
    class_names = _as_list(classes)
    if len(class_names) < 2 or len(set(class_names)) != len(class_names):
        raise ValueError(f"classes must list at least two distinct names, got {classes!r}")
    tag = normalize_modality(modality, "modality argument")
    header, rows = _read_csv_rows(csv_file)
    for wanted, what in ((target, "target"), (image_column, "image"), (id_column, "ID")):
        if wanted is not None and _pick_column(header, wanted, ()) is None:
            raise ValueError(f"{csv_file} has no {what} column {wanted!r}; columns: {', '.join(header)}")
    if target is None:
        raise ValueError(f"name the target column of {csv_file}; columns: {', '.join(header)}")
    target_column = _pick_column(header, target, ())
    image_col = _pick_column(header, image_column, () if id_column else _IMAGE_COLUMNS)
    id_col = None if image_col else _pick_column(header, id_column, _ID_COLUMNS)
    if image_col is None and id_col is None:
        raise ValueError(
            f"{csv_file} has no image or ID column; columns: {', '.join(header)}; pass image_column= or id_column="
        )
    if image_col:
        base = Path(os.path.abspath(str(images_dir))) if images_dir else csv_file.parent
        files: list[Path] = []
    else:
        default = csv_file.parent / "images"
        base = _existing_dir(images_dir if images_dir else default if default.is_dir() else csv_file.parent, "images")
        files = _image_files(base)
    cases, problems, seen = [], [], {}
    for row_number, row in enumerate(rows, start=2):
        row_problems = []
        value = row.get(target_column, "")
        if not value:
            row_problems.append(f"row {row_number}: empty {target_column}")
        elif value not in class_names:
            row_problems.append(f"row {row_number}: {target_column} {value!r} is not one of {class_names}")
        image, image_problem = _row_image(row, row_number, image_col, id_col, base, files)
        if image_problem:
            row_problems.append(image_problem)
        elif image in seen:
            row_problems.append(f"row {row_number}: image {image} is also used by row {seen[image]}")
        if row_problems:
            problems += row_problems
            continue
        seen[image] = row_number
        cases.append({"image": image, "label": class_names.index(value), "label_name": value, "modality": tag})
    if problems:
        raise ValueError(_problems(f"{csv_file} has {len(problems)} problem(s)", problems))
    if not cases:
        raise ValueError(f"{csv_file} has no data rows: expected one row per participant below the header")
    return cases


def _row_image(row, row_number, image_col, id_col, base: Path, files) -> tuple[str | None, str | None]:
    """(absolute image path, None) for a CSV row, or (None, problem naming the row and the value)."""
    if image_col:
        value = row.get(image_col, "")
        if not value:
            return None, f"row {row_number}: empty {image_col}"
        path = os.path.normpath(os.path.join(base, os.path.expanduser(value)))
        if not os.path.isfile(path):
            return None, f"row {row_number}: image {value!r} not found ({path})"
        return path, None
    value = row.get(id_col, "")
    if not value:
        return None, f"row {row_number}: empty {id_col}"
    matches = _id_matches(value, files)
    if not matches:
        return None, f"row {row_number}: no image in {base} starts with {id_col} {value!r}"
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches)
        return None, f"row {row_number}: {id_col} {value!r} matches several images in {base}: {names}"
    return str(matches[0]), None


# ---------------------------------------------------------------------------------------------------------------
# folds and few-label subsets
# ---------------------------------------------------------------------------------------------------------------


def _check_num_folds(num_folds, num_cases: int) -> int:
    """Number of folds as int; every fold must get at least one case."""
    k = int(num_folds)
    if k < 2:
        raise ValueError(f"num_folds must be at least 2, got {num_folds!r}")
    if num_cases < k:
        raise ValueError(f"{k} folds need at least {k} cases, found {num_cases}")
    return k


def assign_folds(
    cases: Sequence[dict], num_folds: int = 5, seed: int = 0, stratify_key: str | None = None
) -> list[dict]:
    """Copies of ``cases`` with a ``"fold"`` in 0..num_folds-1, sorted by case id.

    Cases are ordered by class (``stratify_key``) and, within a class, by a seeded hash of their id, then dealt
    round-robin: fold sizes differ by at most one, and so do each class's counts per fold. The result depends only
    on the case ids and the seed, not on the order of ``cases``.
    """
    k = _check_num_folds(num_folds, len(cases))
    ids = _case_ids(cases)
    order = sorted(
        range(len(cases)),
        key=lambda i: (str(cases[i].get(stratify_key, "")) if stratify_key else "", _rank(seed, "fold", ids[i])),
    )
    folds = {index: position % k for position, index in enumerate(order)}
    return [dict(cases[i], fold=folds[i]) for i in sorted(range(len(cases)), key=lambda i: ids[i])]


def _labeled_order(cases: Sequence[dict], ids: Sequence[str], seed: int, stratify_key: str | None) -> list[int]:
    """Indices of one fold's cases in the order they keep labels; any prefix is spread over classes in proportion."""
    groups: dict[str, list[int]] = {}
    for i in range(len(cases)):
        groups.setdefault(str(cases[i].get(stratify_key, "")) if stratify_key else "", []).append(i)
    keyed = []
    for members in groups.values():
        members.sort(key=lambda i: _rank(seed, "label", ids[i]))
        keyed += [
            ((position + 0.5) / len(members), _rank(seed, "tie", ids[i]), i) for position, i in enumerate(members)
        ]
    return [i for *_, i in sorted(keyed)]


def _num_labeled(label_fraction: float, num_cases: int) -> int:
    """Cases of a fold that keep their label: the rounded share, at least one."""
    return min(num_cases, max(1, int(label_fraction * num_cases + 0.5 + 1e-9)))


def apply_label_fraction(
    cases: Sequence[dict], label_fraction: float, fold: int = 0, seed: int = 0, stratify_key: str | None = None
) -> tuple[list[dict], list[dict]]:
    """Keep labels on validation fold ``fold`` and on a share ``label_fraction`` of every other fold.

    Returns (labeled cases, unlabeled cases ``{"image", "modality", "fold"}``). Each fold's cases are ranked once by
    a seeded hash, and the labeled ones are a prefix of that ranking, so lower fractions give nested subsets.
    """
    fraction = float(label_fraction)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label_fraction must be in (0, 1], got {label_fraction!r}")
    missing = [str(c.get("image")) for c in cases if "fold" not in c]
    if missing:
        raise ValueError(_problems("cases need a 'fold' (run assign_folds first)", missing[:5]))
    fold = int(fold)
    folds = sorted({int(c["fold"]) for c in cases})
    if fold not in folds:
        raise ValueError(f"validation fold {fold} has no cases; folds present: {folds}")
    ids = _case_ids(cases)
    keep = set()
    for f in folds:
        members = [i for i in range(len(cases)) if int(cases[i]["fold"]) == f]
        if f == fold or fraction >= 1.0:
            keep.update(members)
            continue
        order = _labeled_order([cases[i] for i in members], [ids[i] for i in members], seed, stratify_key)
        keep.update(members[j] for j in order[: _num_labeled(fraction, len(members))])
    labeled = [dict(c) for i, c in enumerate(cases) if i in keep]
    unlabeled = [
        {"image": c["image"], "modality": c["modality"], "fold": c["fold"]}
        for i, c in enumerate(cases)
        if i not in keep
    ]
    return labeled, unlabeled


def fold_split(datalist: Sequence[dict], fold: int, role: str) -> list[dict]:
    """Training (``fold != fold``) or validation (``fold == fold``) entries of a datalist, for bundle configs.

    Entries without a ``fold`` (extra unlabeled folders) belong to no validation fold and always count as training.
    """
    name = str(role).strip().lower()
    if name not in _TRAIN_ROLES | _VAL_ROLES:
        raise ValueError(f"unknown role {role!r}: expected 'train' or 'val'")
    fold = int(fold)
    folds = sorted({int(e["fold"]) for e in datalist if "fold" in e})
    if name in _VAL_ROLES:
        selected = [e for e in datalist if "fold" in e and int(e["fold"]) == fold]
    else:
        selected = [e for e in datalist if "fold" not in e or int(e["fold"]) != fold]
    if not selected:
        num_folds = (max(folds) + 1) if folds else 0
        what = f"fold {fold} has no cases" if name in _VAL_ROLES else f"no training cases outside fold {fold}"
        raise ValueError(f"{what} in a datalist with {num_folds} folds ({len(datalist)} entries)")
    return list(selected)


# ---------------------------------------------------------------------------------------------------------------
# the datalist file
# ---------------------------------------------------------------------------------------------------------------


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
