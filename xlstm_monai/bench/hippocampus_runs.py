"""
One cached unit of the hippocampus benchmarks: train brain_hippocampus (or brain_cls, for a classification read of
the same cases) through its own train.yaml for a fixed number of optimiser steps, evaluate the final weights with its
evaluate.yaml on the fold's validation cases, and keep the figures (not the weights) in ``result.json``. A finished
unit is read back; an interrupted one continues from its last epoch (the bundle's resume), or starts again when it
had not finished one. A unit that another process is running raises instead of being started again over it.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from xlstm_monai.workflow import bundle_path, read_structure_metrics, run_workflow

__all__ = ["evaluate_model", "start_sitting", "train_and_evaluate", "training_minutes", "unit_lock"]


@contextmanager
def unit_lock(root: Path):
    """
    Hold ``<root>.lock`` while a cached unit runs, so a second process (another chain of folds, a report read back
    from the cache too early) stops with one line instead of clearing the folder of the run in progress. The lock is
    an OS file lock: it is released when its process dies, so an interrupted unit is never locked out.
    """
    Path(root).parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(f"{root}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RuntimeError(f"{root} is being run by another process: wait for it, or run other units") from None
    try:
        yield
    finally:
        lock.release()


def start_sitting(root: Path) -> None:
    """
    Mark the start of a sitting of a unit that may train in several. The sitting before it ends at the last
    checkpoint it wrote (what a resumed run keeps), so the training lost to an interruption is not counted.
    """
    path, last = Path(root) / "sittings.json", Path(root) / "models" / "last.pt"
    sittings = json.loads(path.read_text()) if path.is_file() else []
    if not sittings and last.is_file():
        sittings = [{"start": None, "end": None}]  # an earlier sitting that kept no record: its time is unknown
    if sittings and "end" not in sittings[-1]:
        ended = last.stat().st_mtime if last.is_file() else sittings[-1]["start"]
        sittings[-1]["end"] = max(ended, sittings[-1]["start"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([*sittings, {"start": time.time()}]))


def training_minutes(root: Path) -> tuple[float | None, int]:
    """
    Minutes of training over a unit's sittings, ending the current one now (None when a sitting kept no record),
    and how many sittings there were.
    """
    path = Path(root) / "sittings.json"
    if not path.is_file():  # trained before sittings were recorded
        return None, 1
    sittings = json.loads(path.read_text())
    sittings[-1].setdefault("end", time.time())
    path.write_text(json.dumps(sittings))
    if any(s["start"] is None for s in sittings):
        return None, len(sittings)
    return sum(s["end"] - s["start"] for s in sittings) / 60, len(sittings)


def _bundle_version(bundle: str = "brain_hippocampus") -> str:
    return json.loads((bundle_path(bundle) / "configs" / "metadata.json").read_text())["version"]


def _evaluate(configs: tuple[str, ...], common: dict, bundle: str = "brain_hippocampus") -> dict:
    """Score ``bundle_root``'s models/model.pt with evaluate.yaml over ``configs``: mean and per-structure figures,
    or for brain_cls the ROC AUC, accuracy and balanced accuracy."""
    run_workflow(bundle, [*configs, "evaluate.yaml"], "train", **common)
    if bundle == "brain_cls":
        rows = (Path(common["bundle_root"]) / "eval" / "metrics.csv").read_text().splitlines()
        metrics = {k: float(v) for k, v in (row.split(",", 1) for row in rows if row)}
        return {k: metrics[f"val_{k}"] for k in ("auc", "accuracy", "balanced_accuracy")}
    metrics = read_structure_metrics(Path(common["bundle_root"]) / "eval")
    return {
        "dice": float(np.mean([m["val_mean_dice"] for m in metrics.values()])),
        "hd95": float(np.mean([m["val_hd95"] for m in metrics.values()])),
        "per_structure_dice": {k: m["val_mean_dice"] for k, m in metrics.items()},
        "per_structure_hd95": {k: m["val_hd95"] for k, m in metrics.items()},
    }


def evaluate_model(
    root: Path,
    model: Path,
    source: Path,
    datalist: Path,
    fold: int,
    configs: tuple[str, ...] = ("train.yaml",),
    overrides: dict | None = None,
) -> dict:
    """
    Score a kept model on ``fold`` with the bundle's evaluate.yaml as it is now (cached in ``root``): a model
    trained before the evaluation changed (e.g. test-time mirroring) is scored again without training again.
    Returns the figures of :func:`train_and_evaluate` with the bundle version that scored them.
    """
    result_file = root / "result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    with unit_lock(root):
        if result_file.is_file():
            return json.loads(result_file.read_text())
        (root / "models").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model, root / "models" / "model.pt")
        common = {
            "bundle_root": str(root),
            "dataset_dir": str(source),
            "datalist": str(datalist),
            "fold": fold,
            "num_workers": 0,
            **(overrides or {}),
        }
        result = {"bundle_version": _bundle_version(), "fold": fold, **(overrides or {}), **_evaluate(configs, common)}
        result_file.write_text(json.dumps(result, indent=2))
        for heavy in ("models", "eval"):
            shutil.rmtree(root / heavy, ignore_errors=True)
        return result


def train_and_evaluate(
    root: Path,
    source: Path,
    datalist: Path,
    fold: int,
    iterations: int,
    batch_size: int,
    learning_rate: float,
    seed: int = 0,
    overrides: dict | None = None,
    record: dict | None = None,
    configs: tuple[str, ...] = ("train.yaml",),
    keep_model: Path | None = None,
    bundle: str = "brain_hippocampus",
) -> dict:
    """
    Train for ``iterations`` steps (whole epochs over the fold's labeled training cases, rounded up), with warm-up
    over the first tenth, validate only at the end (no checkpoint is picked on the validation fold), evaluate, and
    return ``record`` plus the figures: mean Dice and HD95 over the structures, per-structure Dice, labeled cases,
    steps taken and minutes of training. ``configs``: brain_hippocampus's training configs (an overlay such as
    fine_tune.yaml after train.yaml); evaluation adds evaluate.yaml to them. ``keep_model``: where to keep the final
    network (``models/model.pt``) before the unit's weights are cleared; by default no weights are kept.
    ``bundle``: brain_hippocampus, or brain_cls (then the figures are its ROC AUC and accuracies).
    """
    result_file = root / "result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    with unit_lock(root):
        if result_file.is_file():  # finished by another process between the check and the lock
            return json.loads(result_file.read_text())
        trained = (root / "models" / "model.pt").is_file()  # validated at the last epoch: only evaluation is left
        if root.exists() and not trained and not (root / "models" / "last.pt").is_file():
            shutil.rmtree(root)  # interrupted before its first epoch ended: nothing to continue from
        labeled = sum(1 for c in json.loads(Path(datalist).read_text())["training"] if int(c["fold"]) != fold)
        batches = math.ceil(labeled / batch_size)
        epochs = math.ceil(iterations / batches)
        common = {
            "bundle_root": str(root),
            "dataset_dir": str(source),
            "datalist": str(datalist),
            "fold": fold,
            "resume": True,
            "num_workers": 0,
            "seed": seed,
            "batch_size": batch_size,
            **(overrides or {}),
        }
        if not trained:
            start_sitting(root)
            run_workflow(
                bundle,
                list(configs),
                "train",
                epochs=epochs,
                val_interval=epochs,
                learning_rate=learning_rate,
                warmup_epochs=max(epochs // 10, 1),
                **common,
            )
        minutes, sittings = training_minutes(root)
        result = {
            **(record or {}),
            "bundle_version": _bundle_version(bundle),  # the defaults that the overrides were applied to
            "fold": fold,
            "seed": seed,
            "learning_rate": learning_rate,
            "labeled_cases": labeled,
            "iterations": epochs * batches,
            "train_minutes": minutes,
            **({"sittings": sittings} if sittings > 1 else {}),
            **_evaluate(configs, common, bundle),
        }
        if keep_model is not None:
            shutil.copyfile(root / "models" / "model.pt", keep_model)
        result_file.write_text(json.dumps(result, indent=2))
        for heavy in ("models", "eval"):  # the figures stay, the weights and predictions of every run do not
            shutil.rmtree(root / heavy, ignore_errors=True)
        return result
