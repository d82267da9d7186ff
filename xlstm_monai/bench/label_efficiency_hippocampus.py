"""
Label efficiency on real brain MRI: does the pretrained XLSTMUNet beat random initialisation when labels are few?

On an MSD Task04 folder (default: the 200 cases under $XLSTM_MONAI_DATA/msd_hippocampus):

1. A 5-fold datalist (seed 0). For each reported fold, ``pretrain_ssl`` (train.yaml + brain_mri.yaml) pretrains
   on the **images only** of that fold's training folds (plus any ``extra_unlabeled`` folders), so pretraining
   never sees the images it is evaluated on; the export holds the encoder and the U-Net decoder.
2. ``brain_hippocampus`` is fine-tuned from that export ("pretrained") and from random initialisation ("random")
   on nested label subsets of the training folds (the datalist builder's ``label_fraction``), for the same
   number of iterations whatever the subset, and evaluated with its evaluate.yaml on the fold's fully labeled
   validation cases (final weights: no checkpoint is picked on the validation fold).
3. Learning rates are chosen the same way for both arms: the best of one grid per arm on a tuning fold that is
   not reported (its own pretraining, ``tune_fraction`` of the labels, seed 0).
4. Pretraining budgets (``pretrain_epochs``, one or more): the pretrained arm runs once per budget, each budget with
   a pretraining of its own, against the same random-initialisation runs; records carry the crops each saw.

Every unit of work (a pretraining, a fine-tuning run) is cached under ``work_dir``, so an interrupted run resumes
where it stopped. Writes JSON (``runs``: one record per fraction, arm, fold and seed) and prints the table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from xlstm_monai.bench.datasets import shared_dataset
from xlstm_monai.bench.hippocampus_runs import start_sitting, train_and_evaluate, training_minutes, unit_lock
from xlstm_monai.bench.study import cache_key, check_tune_fold, command, mean_sd, paired_differences, write_report
from xlstm_monai.data import build_datalist
from xlstm_monai.data.layouts import scan_images
from xlstm_monai.presets import HIPPOCAMPUS_CPU
from xlstm_monai.workflow import run_workflow

__all__ = ["SCALES", "benchmark_label_efficiency_hippocampus", "format_report", "label_efficiency_study"]

ARMS = ("pretrained", "random")
SCALES = {
    # CPU: the small XLSTMUNet (embed 96, 4 blocks) of the hippocampus CPU recipe; whole 48x64x48 volumes
    "cpu": {
        "network": {**HIPPOCAMPUS_CPU, "qk_conv_kernel_size": 3},  # the block set here: it is in the cache key
        "batch_size": 2,
        "iterations": 300,
        "pretrain": {"epochs": 8, "batch_size": 2, "learning_rate": 1.0e-3, "warmup_epochs": 1},
        "learning_rates": (1.0e-3, 3.0e-3, 1.0e-2, 3.0e-2),
        "pretrained_lr_scales": (1.0, 0.1),
    },
    # GPU: the bundles' default networks and longer schedules
    "full": {
        "network": {},
        "batch_size": 4,
        "iterations": 3000,
        "pretrain": {"epochs": 100, "batch_size": 4, "learning_rate": 5.0e-4, "warmup_epochs": 10},
        "learning_rates": (1.0e-4, 3.0e-4, 1.0e-3),
        "pretrained_lr_scales": (1.0, 0.1),
    },
}


def _prefixed(prefix: str, settings: dict) -> dict:
    return {f"{prefix}#{k}": v for k, v in settings.items()}


class _Study:
    """The cached units of one benchmark run: datalists, pretrainings and fine-tuning runs under ``work``."""

    def __init__(
        self, source: Path, work: Path, scale: dict, iterations: int, pretrain: dict, extra_unlabeled: list[str]
    ) -> None:
        self.source, self.work, self.scale = source, work, scale
        self.iterations, self.pretrain_settings = iterations, pretrain
        self.extra_unlabeled = extra_unlabeled
        self.folds = build_datalist(str(source), str(work / "datalists" / "folds.json"), num_folds=5, seed=0)

    def datalist(self, fraction: float, fold: int) -> Path:
        path = self.work / "datalists" / f"fold{fold}_labels{fraction:g}.json"
        if not path.is_file():
            build_datalist(
                str(self.source),
                str(path),
                num_folds=5,
                fold=fold,
                seed=0,
                label_fraction=fraction,
                base_dir=str(self.source),
            )
        return path

    def pretrain_settings_for(self, epochs: int | None = None) -> dict:
        """The pretraining settings at a budget of ``epochs`` (default: the first budget)."""
        return {**self.pretrain_settings, **({"epochs": int(epochs)} if epochs else {})}

    def pretrain_images(self, fold: int) -> list[dict]:
        """The unlabeled images of a fold's pretraining: every other fold's, and the extra folders'."""
        images = [
            {"image": str(self.source / c["image"]), "modality": "MRI"}
            for c in self.folds["training"]
            if int(c["fold"]) != fold
        ]
        return images + [
            {"image": c["image"], "modality": c["modality"]}
            for spec in self.extra_unlabeled
            for c in scan_images(spec, "MRI")
        ]

    def pretrained(self, fold: int, epochs: int | None = None) -> Path:
        """The export of a pretraining on the images of every fold but ``fold`` (labels unused), at ``epochs``."""
        settings = self.pretrain_settings_for(epochs)
        key = cache_key(self.scale["network"], settings, self.extra_unlabeled)
        root = self.work / f"pretrain_{key}" / f"fold{fold}"
        export = root / "models" / "pretrained.pt"
        if export.is_file():
            return export
        with unit_lock(root):
            return export if export.is_file() else self._pretrain(fold, root, export, settings)

    def _pretrain(self, fold: int, root: Path, export: Path, settings: dict) -> Path:
        """pretrain_ssl (train.yaml + brain_mri.yaml) in ``root``, then its export.yaml."""
        images = self.pretrain_images(fold)
        datalist = root / "images.json"
        datalist.parent.mkdir(parents=True, exist_ok=True)
        datalist.write_text(json.dumps({"training": images}, indent=1))
        settings = dict(settings)
        if self.scale["network"].get("token_mixer") == "none":
            # without token mixing the class token never sees the image: the same embedding for every volume is
            # what the ablation is, not a collapse, so the monitor's stop is put out of reach (it still logs)
            settings["collapse_patience"] = settings["epochs"] + 1
        overrides = {
            "bundle_root": str(root),
            "dataset_dir": str(self.source),
            "datalist": str(datalist),
            "num_workers": 0,
            **_prefixed("encoder_def", self.scale["network"]),
            **settings,
        }
        tqdm.write(f"pretraining for fold {fold} on {len(images)} unlabeled images, {settings['epochs']} epochs")
        start_sitting(root)
        run_workflow("pretrain_ssl", ["train.yaml", "brain_mri.yaml"], "train", **overrides)
        minutes, sittings = training_minutes(root)
        record = {"images": len(images), "epochs": settings["epochs"], "minutes": minutes, "sittings": sittings}
        (root / "record.json").write_text(json.dumps(record))
        run_workflow("pretrain_ssl", ["train.yaml", "brain_mri.yaml", "export.yaml"], "train", **overrides)
        return export

    def pretrain_minutes(self, fold: int, epochs: int | None = None) -> float | None:
        """Training minutes of a cached pretraining (None when it kept no record)."""
        key = cache_key(self.scale["network"], self.pretrain_settings_for(epochs), self.extra_unlabeled)
        record = self.work / f"pretrain_{key}" / f"fold{fold}" / "record.json"
        return json.loads(record.read_text()).get("minutes") if record.is_file() else None

    def encoder_only(self, fold: int, epochs: int | None = None) -> Path:
        """The same export without its decoder: what fine-tuning gains from pretraining the encoder alone."""
        import torch

        export = self.pretrained(fold, epochs)
        path = export.with_name("encoder_only.pt")
        if not path.is_file():
            saved = torch.load(export, map_location="cpu", weights_only=True)
            saved["state_dict"] = {k: v for k, v in saved["state_dict"].items() if not k.startswith("decoder.")}
            saved["hyper_parameters"].pop("decoder", None)
            torch.save(saved, path)
        return path

    def finetune(
        self,
        fraction: float,
        arm: str,
        fold: int,
        seed: int,
        learning_rate: float,
        lr_scale: float = 1.0,
        pretrain_epochs: int | None = None,
    ) -> dict:
        """One fine-tuning run and its evaluation, cached; ``lr_scale``: the pretrained weights' learning rate over
        ``learning_rate`` (discriminative fine-tuning; 1 for random initialisation); ``pretrain_epochs``: the
        budget of the pretraining it starts from (default the first)."""
        pretraining = self.pretrain_settings_for(pretrain_epochs) if arm != "random" else None
        key = cache_key(
            self.scale["network"],
            self.scale["batch_size"],
            self.iterations,
            pretraining,
            self.extra_unlabeled,
        )
        scaled = f"_scale{lr_scale:g}" if lr_scale != 1.0 else ""
        name = f"labels{fraction:g}_{arm}_fold{fold}_seed{seed}_lr{learning_rate:g}{scaled}"
        root = self.work / f"finetune_{key}" / name
        starts = {"pretrained": self.pretrained, "encoder_only": self.encoder_only}
        pretrained = str(starts[arm](fold, pretrain_epochs)) if arm in starts else ""
        overrides = {
            **_prefixed("network_def", self.scale["network"]),
            "pretrained_checkpoint": pretrained,
            "pretrained_lr_scale": lr_scale,
        }
        result = train_and_evaluate(
            root,
            self.source,
            self.datalist(fraction, fold),
            fold,
            self.iterations,
            self.scale["batch_size"],
            learning_rate,
            seed,
            overrides,
            record={"label_fraction": fraction, "arm": arm, "pretrained_lr_scale": lr_scale},
        )
        if pretraining is None:
            return result
        # the budget is a figure of the record, also for units cached before it was recorded
        crops = len(self.pretrain_images(fold)) * pretraining["epochs"]
        return {**result, "pretrain_epochs": pretraining["epochs"], "pretrain_crops": crops}


def label_efficiency_study(
    data_dir: str | None = None,
    scale: str = "cpu",
    network: dict | None = None,
    pretraining: dict | None = None,
    pretrain_epochs: int | tuple[int, ...] | None = None,
    extra_unlabeled: list[str] | None = None,
    work_dir: str = "runs/label_efficiency_hippocampus",
    iterations: int | None = None,
) -> tuple[_Study, tuple[int, ...]]:
    """The cached units of a label-efficiency run with these settings, and its pretraining budgets: what other
    reads of the same pretrainings (``bench probe``) share with it."""
    settings = {**SCALES[scale], "network": {**SCALES[scale]["network"], **(network or {})}}
    source = shared_dataset("msd_hippocampus", data_dir)
    if not (source / "dataset.json").is_file():
        raise FileNotFoundError(f"no MSD dataset.json in {source}")
    if "epochs" in (pretraining or {}):
        raise ValueError("the pretraining budget is pretrain_epochs, not pretraining's epochs.")
    budgets = tuple(int(e) for e in np.atleast_1d(pretrain_epochs or settings["pretrain"]["epochs"]))
    pretrain = {**settings["pretrain"], **(pretraining or {}), "epochs": budgets[0]}
    study = _Study(
        source,
        Path(work_dir),
        settings,
        int(iterations or settings["iterations"]),
        pretrain,
        list(extra_unlabeled or []),
    )
    return study, budgets


def benchmark_label_efficiency_hippocampus(
    data_dir: str | None = None,
    fractions: tuple[float, ...] = (0.05, 0.1, 0.3, 1.0),
    folds: tuple[int, ...] = (0, 1, 2),
    seeds: tuple[int, ...] = (0, 1),
    scale: str = "cpu",
    iterations: int | None = None,
    pretrain_epochs: int | tuple[int, ...] | None = None,
    learning_rates: tuple[float, ...] | None = None,
    pretrained_lr_scales: tuple[float, ...] | None = None,
    tune_fold: int = 4,
    tune_fraction: float = 0.1,
    recipe: dict | None = None,
    network: dict | None = None,
    pretraining: dict | None = None,
    encoder_only: bool = False,
    extra_unlabeled: list[str] | None = None,
    work_dir: str = "runs/label_efficiency_hippocampus",
    output: str = "runs/label_efficiency_hippocampus.json",
) -> dict:
    """
    Args:
        data_dir: MSD Task04 folder; default $XLSTM_MONAI_DATA/msd_hippocampus or ../shared/data beside the checkout.
        fractions: shares of the training folds' labels (nested subsets).
        folds: reported validation folds (each with its own pretraining).
        seeds: fine-tuning seeds (initialisation of what is not pretrained, augmentation, batch order).
        scale: "cpu" (small network, minutes per run) or "full" (bundle defaults, a GPU).
        iterations: optimiser steps of every fine-tuning run; default the scale's.
        pretrain_epochs: epochs of each pretraining; default the scale's. Several (e.g. ``(8, 16, 32)``): the
            pretraining budget axis, the pretrained arm once per budget against the same random runs.
        learning_rates: the grid each arm's learning rate is chosen from on ``tune_fold``.
        pretrained_lr_scales: the grid of the pretrained weights' share of the learning rate (pretrained arm).
        tune_fold: the fold the learning rates are chosen on; it is never reported.
        tune_fraction: label share of the learning-rate choice.
        recipe: each arm's recipe chosen beforehand, e.g. by an earlier run's grid on ``tune_fold``:
            ``{"random": {"learning_rate": 0.01}, "pretrained": {"learning_rate": 0.03, "pretrained_lr_scale": 0.1}}``;
            skips the grid (and the lever runs on the tuning fold), which saves that fold's pretraining.
        network: XLSTMUNet settings over the scale's, for pretraining and both arms alike, e.g.
            ``{"token_mixer": "none"}``: does pretraining pay as much without the mLSTM blocks?
        pretraining: pretrain_ssl settings over the scale's, a pretraining lever judged against the same random runs
            (their cache does not depend on it), e.g. ``{"sparse_restoration": true, "mask_ratio": 0.75}``.
        encoder_only: a third arm at the first budget, wherever the others run: the pretrained encoder alone, the
            U-Net decoder from random initialisation, with the pretrained arm's recipe.
        extra_unlabeled: further folders of unlabeled T1 MRI for pretraining (e.g. ../shared/data/ixi_t1/images).
        work_dir: cache of every unit; a second call with the same settings resumes.
    """
    check_tune_fold(tune_fold, folds)
    study, budgets = label_efficiency_study(
        data_dir, scale, network, pretraining, pretrain_epochs, extra_unlabeled, work_dir, iterations
    )
    settings, source, pretrain = study.scale, study.source, study.pretrain_settings
    grid = tuple(float(lr) for lr in (learning_rates or settings["learning_rates"]))
    started = time.time()

    # the first budget for every fraction, fold and seed before the next budget: a session that stops early leaves
    # complete comparisons, and the random runs (one per fraction, fold and seed) come with the first
    main = [
        (f, arm, fold, seed, budget)
        for budget in budgets
        for f in fractions
        for fold in folds
        for seed in seeds
        for arm in (ARMS + ("encoder_only",) * encoder_only if budget == budgets[0] else ("pretrained",))
    ]
    scales = tuple(float(v) for v in (pretrained_lr_scales or settings["pretrained_lr_scales"]))
    total = (0 if recipe else len(grid) * (1 + len(scales)) + 1) + len(main)
    with tqdm(total=total, desc="label efficiency", unit="run") as progress:

        def run(
            fraction: float, arm: str, fold: int, seed: int, lr: float, scale: float = 1.0, budget: int | None = None
        ) -> dict:
            result = study.finetune(fraction, arm, fold, seed, lr, scale, budget)
            progress.set_postfix_str(f"{fraction:.0%} {arm} fold {fold} seed {seed}: Dice {result['dice']:.3f}")
            progress.update()
            return result

        tuning, levers = [], []
        if recipe:
            chosen = {
                arm: {
                    "learning_rate": float(recipe[arm]["learning_rate"]),
                    "pretrained_lr_scale": float(recipe[arm].get("pretrained_lr_scale", 1.0)),
                }
                for arm in ARMS
            }
        else:
            # each arm's recipe is the best of its grid on the tuning fold: learning rates, and for the pretrained
            # arm also the pretrained weights' share of it (discriminative fine-tuning, a pretraining lever)
            tuning = [run(tune_fraction, "random", tune_fold, 0, lr) for lr in grid]
            tuning += [run(tune_fraction, "pretrained", tune_fold, 0, lr, scale) for lr in grid for scale in scales]
            chosen = {}
            for arm in ARMS:
                best = max((t for t in tuning if t["arm"] == arm), key=lambda t: t["dice"])
                scale = best.get("pretrained_lr_scale", 1.0)  # results cached before the scale existed: 1
                chosen[arm] = {"learning_rate": best["learning_rate"], "pretrained_lr_scale": scale}
            # a lever, on the tuning fold: the pretrained encoder alone, the decoder from random initialisation
            best = chosen["pretrained"]
            levers = [
                run(tune_fraction, "encoder_only", tune_fold, 0, best["learning_rate"], best["pretrained_lr_scale"])
            ]
        chosen["encoder_only"] = chosen["pretrained"]
        runs = [
            run(f, arm, fold, seed, *chosen[arm].values(), budget=budget if arm != "random" else None)
            for f, arm, fold, seed, budget in main
        ]

    report = {
        "task": "hippocampus",
        "command": command(
            "label-efficiency",
            task="hippocampus",
            scale=scale,
            fractions=fractions,
            folds=folds,
            seeds=seeds,
            iterations=study.iterations,
            pretrain_epochs=budgets if len(budgets) > 1 else budgets[0],
            learning_rates=grid,
            pretrained_lr_scales=scales,
            tune_fold=tune_fold,
            tune_fraction=tune_fraction,
            recipe=recipe or None,
            network=network or None,
            pretraining=pretraining or None,
            encoder_only=encoder_only or None,
            extra_unlabeled=extra_unlabeled,
        ),
        "data": str(source),
        "scale": scale,
        "settings": {**settings, "iterations": study.iterations, "pretrain": pretrain, "pretrain_budgets": budgets},
        "learning_rate_choice": {
            "fold": tune_fold,
            "label_fraction": tune_fraction,
            "grid": list(grid),
            "pretrained_lr_scales": list(scales),
            "chosen": chosen,
            "given": bool(recipe),
            "runs": tuning,
        },
        "levers": levers,
        "wall_minutes": (time.time() - started) / 60,
        "runs": runs,
    }
    if len(budgets) > 1:
        pretraining = {b: [study.pretrain_minutes(fold, b) for fold in folds] for b in budgets}
        report["scaling"] = scaling_table(runs, report, pretraining)
        plot_scaling(report["scaling"], Path(output).with_suffix(".png"))
    return write_report(report, output, format_report(report))


def scaling_table(runs: list[dict], report: dict, pretrain_minutes: dict[int, list]) -> list[dict]:
    """The gain per label fraction and pretraining budget, with the crops seen and the CPU hours of the budget's
    pretrained arm (its pretrainings and fine-tuning runs; unknown minutes left out and counted)."""
    rows = []
    for fraction in sorted({r["label_fraction"] for r in runs}):
        for budget, minutes in sorted(pretrain_minutes.items()):
            gains = list(_paired_gains(runs, fraction, budget, report).values())
            mine = [r for r in runs if r["label_fraction"] == fraction and _budget(r, report) == budget]
            if not gains:
                continue
            finetune = [r.get("train_minutes") for r in mine]
            known = [m for m in [*minutes, *finetune] if m is not None]
            rows.append(
                {
                    "label_fraction": fraction,
                    "pretrain_epochs": budget,
                    "pretrain_crops": mine[0].get("pretrain_crops"),
                    "gain_points": float(np.mean(gains)),
                    "gain_sd": float(np.std(gains, ddof=1)) if len(gains) > 1 else 0.0,
                    "pairs": len(gains),
                    "pairs_with_a_gain": int(sum(g > 0 for g in gains)),
                    "cpu_hours": sum(known) / 60,
                    "minutes_unknown": len(minutes) + len(finetune) - len(known),
                }
            )
    return rows


def plot_scaling(rows: list[dict], path: Path) -> Path:
    """Gain (points, mean +- sd over the pairs) against crops seen in pretraining, one line per label fraction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 3.5))
    for fraction in sorted({r["label_fraction"] for r in rows}):
        mine = sorted((r for r in rows if r["label_fraction"] == fraction), key=lambda r: r["pretrain_crops"] or 0)
        x = [r["pretrain_crops"] for r in mine]
        axes.errorbar(
            x,
            [r["gain_points"] for r in mine],
            [r["gain_sd"] for r in mine],
            marker="o",
            capsize=3,
            label=f"{fraction:.0%} labels",
        )
    axes.axhline(0.0, color="grey", linewidth=0.8)
    axes.set_xscale("log", base=2)
    axes.set_xlabel("crops seen in pretraining")
    axes.set_ylabel("pretrained - random (Dice points)")
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _budget(run: dict, report: dict) -> int | None:
    """The pretraining epochs a run started from (records before the budget axis: the report's one budget)."""
    if run["arm"] == "random":
        return None
    return run.get("pretrain_epochs", report.get("settings", {}).get("pretrain", {}).get("epochs"))


def _paired_gains(runs: list[dict], fraction: float, budget: int | None, report: dict) -> dict[tuple[int, int], float]:
    """Pretrained minus random, in points, per (fold, seed) at ``fraction`` and the pretraining ``budget``."""
    mine = [r for r in runs if r["label_fraction"] == fraction]
    pretrained = {
        (r["fold"], r["seed"]): r["dice"] for r in mine if r["arm"] == "pretrained" and _budget(r, report) == budget
    }
    random = {(r["fold"], r["seed"]): r["dice"] for r in mine if r["arm"] == "random"}
    return paired_differences(pretrained, random)


def format_report(report: dict) -> str:
    """Per-fold Dice of each arm (mean over seeds), mean +- sd per arm, and the paired gain with its sd; one row per
    label fraction and pretraining budget (the budget columns only when there are several)."""
    runs = report["runs"]
    folds = sorted({r["fold"] for r in runs})
    budgets = sorted({b for r in runs if (b := _budget(r, report)) is not None})
    several = len(budgets) > 1
    fold_cols = " | ".join(f"fold {f} random / pretrained" for f in folds)
    lines = [
        f"| labels | cases | {'pretraining epochs | crops seen | ' if several else ''}{fold_cols} | random mean +- sd "
        "| pretrained mean +- sd | gain (points) mean +- sd | folds with a gain |",
        "|" + "---|" * (len(folds) + 6 + 2 * several),
    ]
    for fraction in sorted({r["label_fraction"] for r in runs}):
        for budget in budgets:
            mine = [
                r
                for r in runs
                if r["label_fraction"] == fraction and (r["arm"] == "random" or _budget(r, report) == budget)
            ]
            arm = {a: [r["dice"] for r in mine if r["arm"] == a] for a in ARMS}
            if not arm["pretrained"]:
                continue
            measured = sorted({r["fold"] for r in mine if r["arm"] == "pretrained"})
            per_fold = []
            for f in folds:
                if f not in measured:
                    per_fold.append("-")
                    continue
                means = [
                    np.mean([r["dice"] for r in mine if r["arm"] == a and r["fold"] == f] or [np.nan])
                    for a in ("random", "pretrained")
                ]
                per_fold.append(f"{means[0]:.3f} / {means[1]:.3f}")
            gains = _paired_gains(runs, fraction, budget, report)
            values = list(gains.values())
            fold_gain = [np.mean([g for (f, _), g in gains.items() if f == fold]) for fold in measured]
            cases = mine[0]["labeled_cases"]
            crops = next((r.get("pretrain_crops") for r in mine if r["arm"] == "pretrained"), None)
            budget_cols = f"{budget} | {crops if crops is not None else '-'} | " if several else ""
            lines.append(
                f"| {fraction:.0%} | {cases} | {budget_cols}{' | '.join(per_fold)} | {mean_sd(arm['random'])} | "
                f"{mean_sd(arm['pretrained'])} | {mean_sd(values, digits=1, signed=True)} | "
                f"{sum(g > 0 for g in fold_gain)}/{len(measured)} |"
            )
    for fraction in sorted({r["label_fraction"] for r in runs if r["arm"] == "encoder_only"}):
        mine = {
            arm: {
                (r["fold"], r["seed"]): r["dice"] for r in runs if r["label_fraction"] == fraction and r["arm"] == arm
            }
            for arm in ("encoder_only", "random", "pretrained")
        }
        against = {
            a: list(paired_differences(mine["encoder_only"], mine[a]).values()) for a in ("random", "pretrained")
        }
        lines.append(
            f"encoder only, {fraction:.0%} labels: {mean_sd(list(mine['encoder_only'].values()))}; "
            f"minus random {mean_sd(against['random'], digits=1, signed=True)}, "
            f"minus pretrained {mean_sd(against['pretrained'], digits=1, signed=True)} (points, paired by fold, seed)"
        )
    choice = report.get("learning_rate_choice", {})
    for lever in report.get("levers", []):
        scale = lever.get("pretrained_lr_scale", 1.0)
        same = [
            t
            for t in choice.get("runs", [])
            if t["learning_rate"] == lever["learning_rate"]
            and (t["arm"] == "random" or t.get("pretrained_lr_scale", 1.0) == scale)
        ]
        by_arm = {t["arm"]: t["dice"] for t in same}
        lines.append(
            f"lever, fold {lever['fold']} at {lever['label_fraction']:.0%} labels, lr {lever['learning_rate']:g}: "
            f"{lever['arm']} {lever['dice']:.3f} vs pretrained {by_arm.get('pretrained', float('nan')):.3f} "
            f"vs random {by_arm.get('random', float('nan')):.3f}"
        )
    return "\n".join(lines)
