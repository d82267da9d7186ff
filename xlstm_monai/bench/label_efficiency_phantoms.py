"""
Label efficiency, the headline claim of the pretrained encoder: fine-tune heart_seg_ct with 10 %, 30 % and 100 %
of the training labels, from the pretrain_ssl encoder and from random initialisation, with the same budget.

1. Pretrain (pretrain_ssl, the bundle's own configs) on every image available: CT and MRI phantoms, plus real
   images from ``extra_unlabeled`` folders when given.
2. Export the teacher encoder.
3. For each label fraction and each start, fine-tune heart_seg_ct for the same number of iterations on the labeled
   share of the training folds (the datalist builder's nested few-label subsets) and evaluate on the fully labeled
   validation fold.

Writes JSON and prints the table. The defaults are a CPU-sized recipe (48^3 volumes at 3 mm, a small network);
``--scale full`` uses the bundles' default network and sizes, for a GPU.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from xlstm_monai.bench.study import command, write_report
from xlstm_monai.data import build_datalist
from xlstm_monai.phantoms import write_heart_phantoms
from xlstm_monai.presets import SMALL
from xlstm_monai.workflow import read_structure_metrics, run_workflow

__all__ = ["benchmark_label_efficiency"]

SCALES = {
    # CPU: whole 48^3 volumes at 3 mm, a small encoder shared by pretraining and fine-tuning. A short run needs a
    # sharp teacher (no temperature warm-up to 0.07) and fewer prototypes: with the bundle's 0.04 -> 0.07 and 1024
    # prototypes the teacher drifts to uniform outputs within 10 epochs and the collapse monitor stops the run.
    "cpu": {
        "shape": (48, 48, 48),
        "spacing": [3.0, 3.0, 3.0],
        "global": [48, 48, 48],
        "local": [24, 24, 24],
        "encoder": dict(SMALL),
        "out_dim": 256,
        "pretrain_batch": 4,
        "finetune_lr": 3.0e-3,
        "pretrain_lr": 1.0e-3,
        "teacher_temp": [0.04, 0.04],
        "momentum": [0.99, 1.0],
    },
    # GPU: the bundles' defaults
    "full": {
        "shape": (96, 96, 96),
        "spacing": [1.5, 1.5, 1.5],
        "global": [96, 96, 96],
        "local": [48, 48, 48],
        "encoder": {},
        "out_dim": 4096,
        "pretrain_batch": 4,
        "finetune_lr": 2.0e-4,
        "pretrain_lr": 5.0e-4,
        "teacher_temp": [0.04, 0.07],
        "momentum": [0.996, 1.0],
    },
}


def benchmark_label_efficiency(
    output: str = "runs/bench_label_efficiency.json",
    fractions: tuple[float, ...] = (0.1, 0.3, 1.0),
    num_cases: int = 24,
    pretrain_epochs: int = 60,
    finetune_iterations: int = 150,
    scale: str = "cpu",
    extra_unlabeled: list[str] | None = None,
    work_dir: str | None = None,
    seed: int = 0,
) -> dict:
    """
    Args:
        fractions: shares of the training labels to fine-tune with.
        num_cases: CT phantoms with labels (3 folds: a third is the test fold) and as many MRI phantoms (unlabeled).
        pretrain_epochs: epochs of self-supervised pretraining.
        finetune_iterations: iterations of every fine-tuning run, whatever its number of labeled cases.
        scale: "cpu" (small, minutes) or "full" (bundle defaults, a GPU).
        extra_unlabeled: folders of further unlabeled images for pretraining, as "path:CT" / "path:MRI".
    """
    settings = SCALES[scale]
    work = Path(work_dir or tempfile.mkdtemp(prefix="label_efficiency_"))
    data = work / "data"
    start = time.time()
    write_heart_phantoms(str(data), num_cases, "ct", settings["shape"], settings["spacing"], seed)
    write_heart_phantoms(
        str(data / "unlabeled_mr"),
        num_cases,
        "mr",
        settings["shape"],
        settings["spacing"],
        seed + 1000,
        with_labels=False,
    )
    unlabeled = [f"{data / 'unlabeled_mr'}:MRI"] + list(extra_unlabeled or [])
    pretrain_list = work / "pretrain.json"
    build_datalist(str(data), str(pretrain_list), num_folds=3, seed=seed, unlabeled=unlabeled, base_dir=str(data))

    encoder = {f"encoder_def#{k}": v for k, v in settings["encoder"].items()}
    print(f"pretraining on {2 * num_cases} phantoms ({num_cases} CT + {num_cases} MRI) for {pretrain_epochs} epochs")
    pretrain = {
        "bundle_root": str(work / "pretrain"),
        "dataset_dir": str(data),
        "datalist": str(pretrain_list),
        "spacing": settings["spacing"],
        "global_size": settings["global"],
        "local_size": settings["local"],
        "out_dim": settings["out_dim"],
        "patch_out_dim": settings["out_dim"],
        "batch_size": settings["pretrain_batch"],
        "learning_rate": settings["pretrain_lr"],
        "num_workers": 0,
        "teacher_temp": settings["teacher_temp"],
        "momentum": settings["momentum"],
        "teacher_temp_warmup_epochs": max(pretrain_epochs // 5, 1),
        **encoder,
    }
    run_workflow("pretrain_ssl", ["train.yaml"], "train", epochs=pretrain_epochs, **pretrain)
    run_workflow("pretrain_ssl", ["train.yaml", "export.yaml"], "train", **pretrain)
    export = work / "pretrain" / "models" / "pretrained.pt"
    minutes_pretrain = (time.time() - start) / 60

    network = {f"network_def#{k}": v for k, v in settings["encoder"].items()}
    rows = []
    for fraction in fractions:
        datalist = work / f"finetune_{fraction:g}.json"
        built = build_datalist(str(data), str(datalist), num_folds=3, seed=seed, label_fraction=fraction)
        labeled = sum(1 for c in built["training"] if c["fold"] != 0)
        for start_from in ("pretrained", "random"):
            root = work / f"finetune_{fraction:g}_{start_from}"
            batches_per_epoch = max(labeled // 2, 1)
            common = {
                **network,
                "bundle_root": str(root),
                "dataset_dir": str(data),
                "datalist": str(datalist),
                "spacing": settings["spacing"],
                "roi_size": settings["global"],
                "num_samples": 1,
                "num_workers": 0,
                "resume": False,
            }
            began = time.time()
            run_workflow(
                "heart_seg_ct",
                ["train.yaml"],
                "train",
                epochs=max(finetune_iterations // batches_per_epoch, 1),
                val_interval=max(finetune_iterations // batches_per_epoch, 1),
                learning_rate=settings["finetune_lr"],
                warmup_epochs=1,
                pretrained_checkpoint=str(export) if start_from == "pretrained" else "",
                **common,
            )
            run_workflow("heart_seg_ct", ["train.yaml", "evaluate.yaml"], "train", **common)
            metrics = read_structure_metrics(root / "eval")
            dice = float(np.mean([m["val_mean_dice"] for m in metrics.values()]))
            rows.append(
                {
                    "label_fraction": fraction,
                    "labeled_cases": labeled,
                    "start": start_from,
                    "mean_dice": dice,
                    "minutes": (time.time() - began) / 60,
                    "per_structure": {k: m["val_mean_dice"] for k, m in metrics.items()},
                }
            )
            print(f"  {fraction:4.0%} labels ({labeled} cases), {start_from:10s}: mean Dice {dice:.3f}", flush=True)
    report = {
        "command": command(
            "label-efficiency",
            task="heart_phantoms",
            scale=scale,
            fractions=fractions,
            num_cases=num_cases,
            pretrain_epochs=pretrain_epochs,
            finetune_iterations=finetune_iterations,
            extra_unlabeled=extra_unlabeled,
        ),
        "scale": scale,
        "num_cases": num_cases,
        "pretrain_epochs": pretrain_epochs,
        "finetune_iterations": finetune_iterations,
        "pretrain_minutes": minutes_pretrain,
        "runs": rows,
    }
    return write_report(report, output, format_table(report))


def format_table(report: dict) -> str:
    by = {(r["label_fraction"], r["start"]): r for r in report["runs"]}
    lines = ["| labels | cases | random init Dice | pretrained Dice | gain (points) |", "|---|---|---|---|---|"]
    for fraction in sorted({r["label_fraction"] for r in report["runs"]}):
        rnd, pre = by[(fraction, "random")], by[(fraction, "pretrained")]
        lines.append(
            f"| {fraction:.0%} | {pre['labeled_cases']} | {rnd['mean_dice']:.3f} | {pre['mean_dice']:.3f} "
            f"| {100 * (pre['mean_dice'] - rnd['mean_dice']):+.1f} |"
        )
    return "\n".join(lines)
