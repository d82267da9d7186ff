"""
The released weights, made by one command from the real images under ``$XLSTM_MONAI_DATA`` (``../shared/data``):

1. ``pretrain``: the brain-MRI foundation checkpoint. ``pretrain_ssl`` (train.yaml + brain_mri.yaml, as shipped)
   on every unlabeled brain T1 the project may use: the 200 MSD Task04 images (labels never read) and the IXI T1
   brains; then its export.yaml.
2. ``install-foundation``: the export becomes ``pretrain_ssl/models/brain_mri_pretrained.pt``, its hash listed in
   ``large_files.yml``.
3. ``cross-validate``: brain_hippocampus's shipped recipe (train.yaml + fine_tune.yaml, as shipped: it starts from
   the installed foundation checkpoint) on folds of the 200 cases, each scored on its held-out fold.
   ``evaluate`` scores the kept fold models again with evaluate.yaml as it is now (after a change of evaluation,
   such as test-time mirroring), added to each fold's record as ``shipped_evaluation``.
4. ``train``: the same recipe on all 200 cases; ``install-model`` makes its final weights (or, with ``model_from``,
   one cross-validation fold's, whose held-out score is then known) ``brain_hippocampus/models/model.pt``, with its
   hash, and writes the cross-validated figures to the bundle's metadata.json.

Every step is cached under ``work_dir`` (a finished unit is read back, an interrupted training continues from its
last epoch), so the command resumes where it stopped. The foundation pretraining sees the images of every fold
(never a label): the cross-validation therefore measures the recipe with a checkpoint that has seen its validation
images, and the model card says so.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from xlstm_monai.bench.datasets import shared_dataset
from xlstm_monai.bench.hippocampus_runs import (
    evaluate_model,
    start_sitting,
    train_and_evaluate,
    training_minutes,
    unit_lock,
)
from xlstm_monai.data import build_datalist
from xlstm_monai.data.datalist import scan_images
from xlstm_monai.networks import FOUNDATION_CHECKPOINT
from xlstm_monai.networks.checkpoint_file import file_hash
from xlstm_monai.workflow import bundle_path, run_workflow

__all__ = ["FOUNDATION", "HIPPOCAMPUS", "merge_folds", "release_models"]

RELEASE_URL = "https://github.com/xlstm-monai/xlstm-monai/releases/download/v{version}"  # where release assets go
HASH_TYPE = "sha256"
RELEASED_HEADER = (
    "# The released weights of this bundle, made by `xlstm-monai release-models`: in the repository, the wheel\n"
    "# and the release archives, and at their URL. Loading checks each hash; `python -m monai.bundle\n"
    "# download_large_files --bundle_path .` fetches a missing file or verifies it.\n"
)
FOUNDATION = {
    "configs": ["train.yaml", "brain_mri.yaml"],
    "settings": {"epochs": 6, "batch_size": 2, "learning_rate": 1.0e-3, "warmup_epochs": 1},
}
HIPPOCAMPUS = {"configs": ["train.yaml", "fine_tune.yaml"], "folds": (0, 1, 2), "num_folds": 5}
STEPS = ("pretrain", "install-foundation", "cross-validate", "evaluate", "train", "install-model")


def _recipe() -> dict:
    """brain_hippocampus's fine_tune.yaml as shipped: learning rates and schedule of the released model."""
    path = bundle_path("brain_hippocampus") / "configs" / "fine_tune.yaml"
    recipe = yaml.safe_load(path.read_text())
    return {k: recipe[k] for k in ("learning_rate", "pretrained_lr_scale", "batch_size", "epochs")}


def _version(bundle: str) -> str:
    return json.loads((bundle_path(bundle) / "configs" / "metadata.json").read_text())["version"]


def pretrain(work: Path, source: Path, extra_images: list[Path], epochs: int | None = None) -> Path:
    """The foundation pretraining and its export (cached): returns the export's path."""
    root = work / "foundation"
    export = root / "models" / "pretrained.pt"
    if export.is_file():
        return export
    with unit_lock(root):
        if export.is_file():
            return export
        folds = build_datalist(str(source), str(root / "folds.json"), num_folds=HIPPOCAMPUS["num_folds"], seed=0)
        images = [{"image": str(source / c["image"]), "modality": "MRI"} for c in folds["training"]]
        for folder in extra_images:
            images += scan_images(folder, "MRI")
        (root / "images.json").write_text(json.dumps({"training": images}, indent=1))
        settings = {**FOUNDATION["settings"], **({"epochs": int(epochs)} if epochs else {})}
        overrides = {
            "bundle_root": str(root),
            "dataset_dir": str(source),
            "datalist": str(root / "images.json"),
            "num_workers": 0,
            **settings,
        }
        print(f"pretraining on {len(images)} unlabeled images, {settings['epochs']} epochs")
        began = time.time()
        run_workflow("pretrain_ssl", FOUNDATION["configs"], "train", **overrides)
        (root / "record.json").write_text(
            json.dumps({"images": len(images), "settings": settings, "minutes": (time.time() - began) / 60})
        )
        run_workflow("pretrain_ssl", [*FOUNDATION["configs"], "export.yaml"], "train", **overrides)
        return export


def install(file: Path, bundle: str, name: str) -> Path:
    """Copy a trained file into ``bundle``'s models/ and list it, with its hash and release URL, in large_files.yml."""
    folder = bundle_path(bundle)
    target = folder / "models" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(file, target)
    listing = folder / "large_files.yml"
    entries = [
        e for e in (yaml.safe_load(listing.read_text()) or {}).get("large_files") or [] if e["path"] != f"models/{name}"
    ]
    version = _version(bundle)
    entries.append(
        {
            "path": f"models/{name}",
            "url": f"{RELEASE_URL.format(version=version)}/{bundle}_v{version}_{name}",
            "hash_val": file_hash(target, HASH_TYPE),
            "hash_type": HASH_TYPE,
        }
    )
    listing.write_text(RELEASED_HEADER + yaml.safe_dump({"large_files": entries}, sort_keys=False))
    print(f"{target}: {target.stat().st_size / 2**20:.1f} MiB, {HASH_TYPE} {entries[-1]['hash_val']}")
    return target


def _cross_validation_units(work: Path, epochs: int) -> Path:
    """The cached fold units of one schedule length: a study's units stay valid when the recipe adopts its schedule."""
    return work / "cross_validation" / f"epochs{epochs}"


def _all_cases_unit(work: Path, epochs: int) -> Path:
    """The cached model on all cases of one schedule length, trained ahead of the recipe or for it."""
    return work / f"released_model_epochs{epochs}"


def cross_validate(work: Path, source: Path, folds=HIPPOCAMPUS["folds"], epochs: int | None = None) -> list[dict]:
    """
    The shipped recipe on each fold, from the installed foundation checkpoint, scored on the held-out fold.
    ``epochs``: another schedule length than the recipe's (the schedule study); units are cached per schedule length.
    """
    recipe = _recipe()
    epochs = int(epochs or recipe["epochs"])
    units = _cross_validation_units(work, epochs)
    datalist = work / "datalists" / "folds.json"
    if not datalist.is_file():
        build_datalist(str(source), str(datalist), num_folds=HIPPOCAMPUS["num_folds"], seed=0, base_dir=str(source))
    batches = -(-sum(1 for c in json.loads(datalist.read_text())["training"] if int(c["fold"]) != 0) // 2)
    runs = []
    for fold in folds:
        runs.append(
            train_and_evaluate(
                units / f"fold{fold}",
                source,
                datalist,
                fold,
                iterations=epochs * batches,
                batch_size=recipe["batch_size"],
                learning_rate=recipe["learning_rate"],
                overrides={"pretrained_lr_scale": recipe["pretrained_lr_scale"]},
                configs=HIPPOCAMPUS["configs"],
                keep_model=units / f"fold{fold}_model.pt",
                record={"recipe": "brain_hippocampus train.yaml + fine_tune.yaml", "foundation": _foundation_hash()},
            )
        )
        print(f"fold {fold}: Dice {runs[-1]['dice']:.4f}, HD95 {runs[-1]['hd95']:.2f} mm")
    return runs


def evaluate_folds(work: Path, source: Path, folds, epochs: int | None = None) -> dict[int, dict]:
    """
    Score each fold's kept cross-validation model again with brain_hippocampus's evaluate.yaml as it is now (e.g.
    after test-time mirroring was added), without training again; folds whose model this machine lacks are
    skipped, said so. Returns {fold: figures}.
    """
    units = _cross_validation_units(work, int(epochs or _recipe()["epochs"]))
    evaluate = yaml.safe_load((bundle_path("brain_hippocampus") / "configs" / "evaluate.yaml").read_text())
    scored = {}
    for fold in folds:
        model = units / f"fold{fold}_model.pt"
        if not model.is_file():
            print(f"fold {fold}: no kept model at {model}, not scored again")
            continue
        figures = evaluate_model(
            units / f"fold{fold}_evaluation_v{_version('brain_hippocampus')}",
            model,
            source,
            work / "datalists" / "folds.json",
            fold,
            configs=HIPPOCAMPUS["configs"],
        )
        scored[fold] = {**figures, "mirror_axes": evaluate.get("mirror_axes", [])}
        print(f"fold {fold}: Dice {figures['dice']:.4f}, HD95 {figures['hd95']:.2f} mm (evaluate.yaml as shipped)")
    return scored


def _foundation_hash() -> str:
    from xlstm_monai.workflow import bundles_dir

    return file_hash(bundles_dir() / FOUNDATION_CHECKPOINT, HASH_TYPE)


def train_final(work: Path, source: Path, epochs: int | None = None) -> Path:
    """
    The shipped recipe on all cases (no held-out fold); returns the final weights as a bare state dict file.
    ``epochs``: another schedule length than the recipe's, trained ahead of adopting it (cached per schedule length).
    An interrupted run continues from its last epoch.
    """
    recipe = _recipe()
    recipe["epochs"] = int(epochs or recipe["epochs"])
    root = _all_cases_unit(work, recipe["epochs"])
    weights = root / "model.pt"
    if weights.is_file():
        return weights
    with unit_lock(root):
        if weights.is_file():
            return weights
        folds = build_datalist(str(source), str(root / "folds.json"), num_folds=HIPPOCAMPUS["num_folds"], seed=0)
        cases = [{"image": c["image"], "label": c["label"]} for c in folds["training"]]
        root.mkdir(parents=True, exist_ok=True)
        # every case trains; the validation section (a training fold) only satisfies the config: its score is a
        # training-set figure, recorded as such, and the released weights are the final ones either way
        datalist = {"training": cases, "validation": [c for c, f in zip(cases, folds["training"]) if f["fold"] == 0]}
        (root / "all_cases.json").write_text(json.dumps(datalist, indent=1))
        start_sitting(root)
        run_workflow(
            "brain_hippocampus",
            HIPPOCAMPUS["configs"],
            "train",
            bundle_root=str(root),
            dataset_dir=str(source),
            datalist=str(root / "all_cases.json"),
            epochs=recipe["epochs"],
            resume=True,
            num_workers=0,
        )
        state = torch.load(root / "models" / "last.pt", map_location="cpu", weights_only=True)["model"]
        torch.save({k: v.contiguous() for k, v in state.items()}, weights)
        minutes, sittings = training_minutes(root)
        (root / "record.json").write_text(
            json.dumps({"cases": len(cases), "recipe": recipe, "minutes": minutes, "sittings": sittings})
        )
        return weights


SAME_RECIPE = ("recipe", "foundation", "iterations", "learning_rate", "seed")


def merge_folds(previous: list[dict], runs: list[dict]) -> list[dict]:
    """
    The record's folds after a run of some of them: the folds just run, plus the earlier record's other folds where
    they ran the same recipe from the same foundation checkpoint (folds run by separate processes or sessions add up
    to one cross-validation; a changed recipe starts a new one). Sorted by fold.
    """
    if not runs:
        return sorted(previous, key=lambda r: r["fold"])
    key = {k: runs[0].get(k) for k in SAME_RECIPE}
    done = {r["fold"] for r in runs}
    kept = [r for r in previous if r["fold"] not in done and all(r.get(k) == v for k, v in key.items())]
    return sorted([*kept, *runs], key=lambda r: r["fold"])


def summary(runs: list[dict]) -> dict:
    """Mean +- sd over folds of Dice and HD95, per structure too: what metadata.json and the model card quote."""

    def stats(values):
        values = np.asarray(values, dtype=float)
        return {
            "mean": round(float(values.mean()), 4),
            "sd": round(float(values.std(ddof=1)) if len(values) > 1 else 0.0, 4),
        }

    structures = sorted(runs[0]["per_structure_dice"])
    return {
        "folds": [r["fold"] for r in runs],
        "mean_dice": stats([r["dice"] for r in runs]),
        "hd95_mm": stats([r["hd95"] for r in runs]),
        "per_structure_dice": {s: stats([r["per_structure_dice"][s] for r in runs]) for s in structures},
        "per_structure_hd95_mm": {s: stats([r["per_structure_hd95"][s] for r in runs]) for s in structures},
    }


def write_eval_metrics(report: dict, bundle: str = "brain_hippocampus") -> dict:
    """The cross-validated figures of the released recipe in the bundle's metadata.json (``eval_metrics``, as the
    model zoo's bundles give theirs)."""
    path = bundle_path(bundle) / "configs" / "metadata.json"
    metadata = json.loads(path.read_text())
    result = report["summary"]
    metadata["eval_metrics"] = {
        "mean_dice": result["mean_dice"]["mean"],
        **{f"{name}_dice": value["mean"] for name, value in result["per_structure_dice"].items()},
        "mean_hd95_mm": result["hd95_mm"]["mean"],
        "protocol": (
            f"cross-validation of the released recipe (configs/fine_tune.yaml) on folds {result['folds']} of 5 of the "
            "200 MSD Task04 cases, each fold scored on its 40 held-out cases on their original grids (final weights); "
            "the foundation checkpoint had seen every image (never a label); docs/README.md"
        ),
    }
    path.write_text(json.dumps(metadata, indent=4) + "\n")
    return metadata["eval_metrics"]


def release_models(
    steps: tuple[str, ...] = STEPS,
    folds: tuple[int, ...] = HIPPOCAMPUS["folds"],
    model_from: str = "all",
    data_dir: str | None = None,
    extra_images: tuple[str, ...] | None = None,
    work_dir: str = "runs/release",
    output: str = "docs/results/brain_hippocampus_release.json",
    epochs: int | None = None,
) -> dict:
    """
    Run the release ``steps`` in order (default all, each cached) and write the cross-validation record.

    Args:
        folds: the validation folds to run (of 5); the record at ``output`` keeps its other folds of the same recipe,
            so folds run by separate processes or sessions add up to one cross-validation.
        model_from: what ``install-model`` releases: "all" (the recipe on all cases, the ``train`` step) or
            "foldN" (fold N's cross-validation model, trained on the other folds: its held-out score is measured).
        data_dir: the MSD Task04 folder; default $XLSTM_MONAI_DATA/msd_hippocampus.
        extra_images: further folders of unlabeled brain T1 for the foundation pretraining; default the IXI T1
            brains beside the MSD folder.
        epochs: cross-validate the recipe at another schedule length (where does it level off?), writing that record
            to its own ``output``, not the released recipe's; or train it on all cases (``train``) ahead of adopting
            it in the recipe. ``install-model`` takes only the recipe's own schedule.
    """
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ValueError(f"unknown release step(s) {unknown}: choose from {', '.join(STEPS)}")
    other_schedule = bool(epochs) and int(epochs) != _recipe()["epochs"]
    writes_record = "cross-validate" in steps or "evaluate" in steps
    if other_schedule and writes_record and Path(output).name == "brain_hippocampus_release.json":
        raise ValueError(f"--epochs {epochs} is not the released recipe's schedule: give it its own --output")
    if other_schedule and "install-model" in steps:
        raise ValueError(
            f"--epochs {epochs} is not the released recipe's schedule: set it in "
            "recipes/bundles/brain_hippocampus.yaml (and render the configs) before installing a model trained with it"
        )
    source = shared_dataset("msd_hippocampus", data_dir)
    extra = [Path(p) for p in extra_images] if extra_images is not None else [source.parent / "ixi_t1" / "images"]
    work = Path(work_dir)
    report: dict = {}
    if "pretrain" in steps or "install-foundation" in steps:
        export = pretrain(work, source, extra)
        if "install-foundation" in steps:
            install(export, "pretrain_ssl", Path(FOUNDATION_CHECKPOINT).name)
    if "cross-validate" in steps:
        fresh = cross_validate(work, source, folds, epochs)
        # read after the folds ran: folds run side by side in separate processes each add theirs to the record
        previous = json.loads(Path(output).read_text())["runs"] if Path(output).is_file() else []
        runs = merge_folds(previous, fresh)
        command = f"xlstm-monai release-models --steps cross-validate --folds {','.join(str(r['fold']) for r in runs)}"
        recipe = _recipe()
        if epochs and int(epochs) != recipe["epochs"]:
            command += f" --epochs {int(epochs)} --output {output}"
            recipe["epochs"] = int(epochs)
        report = {"command": command, "recipe": recipe, "summary": summary(runs), "runs": runs}
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(report, indent=2))
        print(json.dumps(report["summary"], indent=1))
    if "evaluate" in steps:
        if not Path(output).is_file():
            raise FileNotFoundError(f"{output}: no cross-validation record to add the evaluation to")
        record = json.loads(Path(output).read_text())
        scored = evaluate_folds(work, source, [r["fold"] for r in record["runs"] if r["fold"] in folds], epochs)
        for run in record["runs"]:
            if run["fold"] in scored:
                run["shipped_evaluation"] = scored[run["fold"]]
        Path(output).write_text(json.dumps(record, indent=2))
        report = record
    if "train" in steps or ("install-model" in steps and model_from == "all"):
        weights = train_final(work, source, epochs)
    if "install-model" in steps:
        if model_from != "all":
            weights = _cross_validation_units(work, _recipe()["epochs"]) / f"{model_from}_model.pt"
            if not weights.is_file():
                raise FileNotFoundError(f"{weights}: run the cross-validation of {model_from} first")
            state = torch.load(weights, map_location="cpu", weights_only=True)
            weights = weights.with_name(f"{model_from}_released.pt")
            torch.save({k: v.contiguous() for k, v in state.get("model", state).items()}, weights)
        target = install(weights, "brain_hippocampus", "model.pt")
        if Path(output).is_file():
            record = json.loads(Path(output).read_text())
            trained = _all_cases_unit(work, _recipe()["epochs"]) / "record.json"
            record["released_model"] = {
                "version": _version("brain_hippocampus"),
                "from": model_from,
                HASH_TYPE: file_hash(target, HASH_TYPE),
                **(json.loads(trained.read_text()) if model_from == "all" and trained.is_file() else {}),
            }
            Path(output).write_text(json.dumps(record, indent=2))
            write_eval_metrics(record)
    return report
