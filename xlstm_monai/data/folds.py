"""
Folds and few-label subsets, fixed once so every experiment on a dataset compares like with like: they depend only
on the case ids and the seed, never on file system order.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from xlstm_monai.data.layouts import _first, _problems

__all__ = ["apply_label_fraction", "assign_folds", "fold_split"]

_TRAIN_ROLES = {"train", "training"}
_VAL_ROLES = {"val", "valid", "validation"}


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
