"""
The field on real hippocampus: XLSTMUNet beside its ablation without mLSTM blocks and MONAI's UNet and SegResNet
(UNETR, and variants of XLSTMUNet that each change one thing, on request), k-fold on an MSD Task04 folder,
everything else equal.

Every network trains through brain_hippocampus's own train.yaml (only ``network_def`` differs) for the same number of
steps with the same schedule, and is scored by its evaluate.yaml (Dice and HD95 per structure, on the original
grids, final weights). Each network's learning rate is chosen the same way: the best of one grid on a tuning fold
that is not reported. Every (network, fold) unit is cached, so an interrupted run resumes. Writes JSON and prints
mean +- sd per network, paired differences to XLSTMUNet and wall time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from monai.utils import look_up_option
from tqdm import tqdm

from xlstm_monai.bench.datasets import shared_dataset
from xlstm_monai.bench.hippocampus_runs import train_and_evaluate
from xlstm_monai.bench.study import cache_key, check_tune_fold, command, mean_sd, paired_differences, write_report
from xlstm_monai.data import build_datalist
from xlstm_monai.presets import HIPPOCAMPUS_CPU, overrides

__all__ = ["NETWORKS", "benchmark_hippocampus", "format_report", "network_overrides"]

REFERENCE = "XLSTMUNet"
UNET = {
    "_target_": "UNet",
    "spatial_dims": 3,
    "in_channels": 1,
    "out_channels": 3,
    "channels": [32, 64, 128, 256, 512],
    "strides": [2, 2, 2, 2],
    "num_res_units": 2,
}
SEGRESNET = {"_target_": "SegResNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 3, "init_filters": 16}
UNETR = {
    "_target_": "UNETR",
    "spatial_dims": 3,
    "in_channels": 1,
    "out_channels": 3,
    "img_size": [48, 64, 48],
    "feature_size": 16,
    "hidden_size": 768,
}


def _networks(scale: str) -> dict[str, dict]:
    """
    Overrides of each network: the CPU recipe's small XLSTMUNet, or the bundle's default network on a GPU.

    Every block setting that a variant compares is set explicitly, so a record's ``settings.networks`` says what ran
    whatever the bundle's defaults later become (the cache key is these overrides).
    """
    size = overrides(HIPPOCAMPUS_CPU) if scale == "cpu" else {}
    qkconv, plain = {"network_def#qk_conv_kernel_size": 3}, {"network_def#qk_conv_kernel_size": 0}
    xlstm = {**size, **qkconv}  # the bundles' blocks: q/k from a depthwise 3^3 convolution of the token grid
    noblocks = {**size, "network_def#token_mixer": "none"}
    return {
        "XLSTMUNet": xlstm,
        "XLSTMUNet-noblocks": noblocks,
        "UNet": {"network_def": UNET},
        "SegResNet": {"network_def": SEGRESNET},
        "UNETR": {"network_def": UNETR},
        # one change each to the XLSTMUNet above, to measure what each does
        "XLSTMUNet-noqkconv": {**size, **plain},  # q/k from the tokens themselves (the plain mLSTM block)
        "XLSTMUNet-feature16": {**xlstm, "network_def#feature_size": 16},  # a decoder twice as wide
        "XLSTMUNet-patch4": {**xlstm, "network_def#patch_size": 4},  # 4^3 patches: 8x the tokens, 2 decoder stages
        "XLSTMUNet-layerscale": {**xlstm, "network_def#layer_scale_init": 1.0e-5},  # branches that start near zero
        # the ablation and the plain block at the wider decoder: do the blocks pay there?
        "XLSTMUNet-noblocks-feature16": {**noblocks, "network_def#feature_size": 16},
        "XLSTMUNet-feature16-noqkconv": {**size, **plain, "network_def#feature_size": 16},
        # with and without blocks at 4^3 patches: do the blocks pay with 8x the tokens (2304 a crop, not 288)?
        "XLSTMUNet-noblocks-patch4": {**noblocks, "network_def#patch_size": 4},
        # the 1/2 and 1/4 decoder stages also fitted to the labels (DeepSupervisionLoss), with and without blocks
        "XLSTMUNet-feature16-deepsup": {**xlstm, "network_def#feature_size": 16, "network_def#deep_supervision": 2},
        "XLSTMUNet-noblocks-feature16-deepsup": {
            **noblocks,
            "network_def#feature_size": 16,
            "network_def#deep_supervision": 2,
        },
        # the names that the records of bundle 0.1.0 carry (docs/results/hippocampus_levers.json and
        # hippocampus_schedule.json), kept so that those records' commands still run and build what they built then:
        # the q/k convolution at the wider decoder (today's XLSTMUNet-feature16, the same overrides and cache key),
        # and LayerScale on the plain block at the wider decoder (plain was 0.1.0's default, so its record has no
        # qk_conv_kernel_size; it is set here so that the name keeps its meaning now that the default is 3)
        "XLSTMUNet-feature16-qkconv": {**xlstm, "network_def#feature_size": 16},
        # the released network with one 3^3 convolution each side of a summed skip at input resolution (CPU speed)
        "XLSTMUNet-feature16-single": {
            **xlstm,
            "network_def#feature_size": 16,
            "network_def#full_resolution": "single",
        },
        # the released network with half the channels at input resolution and one 3^3 convolution on the image side
        "XLSTMUNet-feature16-narrow": {
            **xlstm,
            "network_def#feature_size": 16,
            "network_def#full_resolution": "narrow",
        },
        "XLSTMUNet-feature16-layerscale": {
            **size,
            **plain,
            "network_def#feature_size": 16,
            "network_def#layer_scale_init": 1.0e-5,
        },
    }


def network_overrides(names: tuple[str, ...], scale: str = "cpu") -> dict[str, dict]:
    """The overrides of each named network at ``scale``; an unknown name is a ValueError that lists the known ones."""
    table = _networks(scale)
    return {name: look_up_option(name, table) for name in names}


NETWORKS = tuple(_networks("cpu"))
SCALES = {
    "cpu": {"iterations": 600, "batch_size": 2, "learning_rates": (3.0e-3, 1.0e-2), "tune_iterations": 300},
    "full": {"iterations": 8000, "batch_size": 4, "learning_rates": (1.0e-4, 3.0e-4, 1.0e-3), "tune_iterations": 2000},
}


def _unit_key(overrides: dict, steps: int, batch_size: int, lr: float, fold: int, seed: int = 0) -> str:
    return json.dumps([overrides, int(steps), int(batch_size), float(lr), int(fold), int(seed)], sort_keys=True)


def recorded_units(paths: tuple[str, ...]) -> dict[str, dict]:
    """
    The runs of earlier records of this benchmark, keyed by what defines a unit (the network's overrides, steps,
    batch size, learning rate, fold, seed): a fresh machine reads a committed record's units back instead of
    training them again, as it would read its own cache. Each run read back names the record it came from.
    """
    units = {}
    for path in paths:
        record = json.loads(Path(path).read_text())
        settings = record["settings"]
        for run in record["runs"]:
            network = settings["networks"][run["network"]]
            key = _unit_key(
                network,
                settings["iterations"],
                settings["batch_size"],
                run["learning_rate"],
                run["fold"],
                run.get("seed", 0),
            )
            units[key] = {**run, "read_from": str(path)}
    return units


def benchmark_hippocampus(
    data_dir: str | None = None,
    folds: tuple[int, ...] = (0, 1, 2),
    networks: tuple[str, ...] = ("XLSTMUNet", "XLSTMUNet-noblocks", "UNet", "SegResNet"),
    scale: str = "cpu",
    iterations: int | None = None,
    learning_rates: tuple[float, ...] | None = None,
    tune_fold: int = 4,
    work_dir: str = "runs/hippocampus_field",
    output: str = "runs/hippocampus_field.json",
    reference: str = REFERENCE,
    reuse: tuple[str, ...] = (),
) -> dict:
    """
    Args:
        data_dir: MSD Task04 folder; default $XLSTM_MONAI_DATA/msd_hippocampus or ../shared/data beside the checkout.
        folds: reported validation folds of the 5.
        networks: from :data:`NETWORKS`; XLSTMUNet is the reference of the paired differences.
        scale: "cpu" (the small XLSTMUNet of the label-efficiency benchmark, 600 steps of batch 2) or "full" (the
            bundle's default network, a GPU).
        iterations: optimiser steps of every run; default the scale's.
        learning_rates: the grid each network's learning rate is chosen from on ``tune_fold`` (with the scale's
            ``tune_iterations``); a single rate is every network's, without tuning runs.
        reference: the network the others are paired with, fold by fold.
        reuse: earlier records (JSON) of this benchmark whose units, where the same, are read back, not re-run.
    """
    check_tune_fold(tune_fold, folds)
    settings = {**SCALES[scale], **({"iterations": int(iterations)} if iterations else {})}
    grid = tuple(float(lr) for lr in (learning_rates or settings["learning_rates"]))
    chosen_networks = network_overrides(tuple(networks), scale)
    network_overrides((reference,), scale)  # a misspelt reference fails before any training
    source = shared_dataset("msd_hippocampus", data_dir)
    if not (source / "dataset.json").is_file():
        raise FileNotFoundError(f"no MSD dataset.json in {source}")
    work = Path(work_dir)
    started = time.time()

    recorded = recorded_units(tuple(reuse))

    def unit(name: str, fold: int, steps: int, lr: float) -> dict:
        same = recorded.get(_unit_key(chosen_networks[name], steps, settings["batch_size"], lr, fold))
        if same is not None:
            return {**same, "network": name}
        datalist = work / "datalists" / f"fold{fold}.json"
        if not datalist.is_file():
            build_datalist(str(source), str(datalist), num_folds=5, fold=fold, seed=0, base_dir=str(source))
        key = cache_key(chosen_networks[name], steps, settings["batch_size"])
        root = work / f"{name}_{key}" / f"fold{fold}_lr{lr:g}"
        return train_and_evaluate(
            root,
            source,
            datalist,
            fold,
            steps,
            settings["batch_size"],
            lr,
            overrides=chosen_networks[name],
            record={"network": name},
        )

    tuning, runs, chosen = [], [], {}
    total = len(networks) * (len(grid) + len(folds))
    with tqdm(total=total, desc="hippocampus field", unit="run") as progress:
        for name in networks:
            if len(grid) == 1:  # nothing to choose: no tuning run
                chosen[name] = grid[0]
            else:
                tried = [unit(name, tune_fold, settings["tune_iterations"], lr) for lr in grid]
                tuning += tried
                chosen[name] = max(tried, key=lambda r: r["dice"])["learning_rate"]
            progress.update(len(grid))
            for fold in folds:
                runs.append(unit(name, fold, settings["iterations"], chosen[name]))
                progress.set_postfix_str(f"{name} fold {fold}: Dice {runs[-1]['dice']:.3f}")
                progress.update()
    report = {
        "command": command(
            "hippocampus",
            scale=scale,
            folds=folds,
            networks=networks,
            iterations=settings["iterations"],
            learning_rates=[f"{lr:g}" for lr in grid],
            reference=reference if reference != REFERENCE else None,
            reuse=list(reuse) or None,
        ),
        "reference": reference,
        "data": str(source),
        "settings": {**settings, "learning_rate_grid": list(grid), "tune_fold": tune_fold, "networks": chosen_networks},
        "learning_rate_choice": {"chosen": chosen, "runs": tuning},
        "wall_minutes": (time.time() - started) / 60,
        "runs": runs,
    }
    return write_report(report, output, format_report(report))


def format_report(report: dict) -> str:
    """Per network: Dice and HD95 mean +- sd over folds, the paired Dice difference to the reference, minutes a run."""
    runs = report["runs"]
    names = list(dict.fromkeys(r["network"] for r in runs))
    reference_name = report.get("reference", REFERENCE)
    reference = {r["fold"]: r["dice"] for r in runs if r["network"] == reference_name}
    lines = [
        f"| network | lr | Dice mean +- sd | HD95 mm | Dice - {reference_name} (points) | folds | minutes / run |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        mine = [r for r in runs if r["network"] == name]
        diffs = list(paired_differences({r["fold"]: r["dice"] for r in mine}, reference).values())
        diff = mean_sd(diffs, digits=1, signed=True) if name != reference_name and diffs else ""
        lines.append(
            f"| {name} | {mine[0]['learning_rate']:g} | {mean_sd([r['dice'] for r in mine])} | "
            f"{mean_sd([r['hd95'] for r in mine])} | {diff} | {len(mine)} | "
            f"{np.mean([r['train_minutes'] for r in mine]):.1f} |"
        )
    return "\n".join(lines)
