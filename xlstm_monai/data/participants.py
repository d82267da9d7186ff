"""CSV participant tables for classification: one row a case, its image found by path or by id."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from xlstm_monai.data.layouts import _as_list, _existing_dir, _image_files, _problems, _split_suffix, normalize_modality

__all__ = ["read_participants_csv"]

# Column names tried, in order, when the caller names neither an image nor an ID column.
_IMAGE_COLUMNS = ("image", "image_path", "path", "file", "filename", "filepath")
_ID_COLUMNS = ("id", "mrid", "participant_id", "subject_id", "subject", "subjectid", "ptid", "case_id")


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
