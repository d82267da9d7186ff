"""
Leave-one-out over the four Sunnybrook cardiac MRI cases with heart_seg_mri: LV blood pool and myocardium Dice.

Sunnybrook labels only the left ventricle: blood pool (1) is put on the MM-WHS LV channel and myocardium (2) on the
myocardium channel through the bundle's ``label_codes``; the other five channels have no reference and are not
scored. Each fold trains on three cases and evaluates the fourth through the bundle's own train and evaluate
configs. Writes JSON and prints a table.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from xlstm_monai.bench.datasets import shared_dataset
from xlstm_monai.bench.study import command, write_report
from xlstm_monai.data import build_datalist
from xlstm_monai.presets import SMALL, overrides
from xlstm_monai.workflow import read_structure_metrics, run_workflow

__all__ = ["benchmark_sunnybrook"]

SUNNYBROOK_CODES = [0, 1, None, None, None, 2, None, None]  # blood pool -> LV channel, myocardium -> channel 5


def benchmark_sunnybrook(
    data_dir: str | None = None,
    epochs: int = 100,
    spacing: tuple[float, float, float] = (3.0, 3.0, 3.0),
    roi_size: tuple[int, int, int] = (48, 48, 48),
    small: bool = True,
    output: str = "runs/bench_sunnybrook.json",
    work_dir: str | None = None,
) -> dict:
    """
    Args:
        data_dir: the Sunnybrook folder (imagesTr/, labelsTr/); default $XLSTM_MONAI_DATA/sunnybrook_lv_mri or
            ../shared/data/sunnybrook_lv_mri beside the checkout.
        epochs: training epochs per fold (3 cases, 2 iterations an epoch).
        spacing, roi_size: resampling target (mm) and training crop.
        small: a small XLSTMUNet (embed 96, depth 4) with a high learning rate, the CPU recipe; False trains the
            bundle's default network with its default learning rate.
    """
    source = shared_dataset("sunnybrook_lv_mri", data_dir)
    if not (source / "imagesTr").is_dir():
        raise FileNotFoundError(f"Sunnybrook data not found at {source}")
    work = Path(work_dir or tempfile.mkdtemp(prefix="sunnybrook_"))
    datalist = work / "datalist.json"
    cases = build_datalist(str(source), str(datalist), kind="paired", modality="MRI", num_folds=4)["training"]
    settings = {
        "dataset_dir": str(source),
        "datalist": str(datalist),
        "label_codes": SUNNYBROOK_CODES,
        "spacing": list(spacing),
        "roi_size": list(roi_size),
        "num_samples": 2,
        "num_workers": 0,
        "val_interval": epochs,
    }
    if small:
        settings.update(
            {
                **overrides(SMALL),
                "learning_rate": 3.0e-3,
                "warmup_epochs": 2,
            }
        )
    folds = []
    for fold in range(4):
        root = work / f"fold{fold}"
        start = time.time()
        common = {**settings, "bundle_root": str(root), "fold": fold}
        run_workflow("heart_seg_mri", ["train.yaml"], "train", epochs=epochs, **common)
        run_workflow("heart_seg_mri", ["train.yaml", "evaluate.yaml"], "train", **common)
        metrics = read_structure_metrics(root / "eval")
        case = next(Path(c["image"]).name for c in cases if c["fold"] == fold)
        folds.append(
            {
                "fold": fold,
                "test_case": case,
                "lv_blood_pool_dice": metrics["left_ventricle"]["val_mean_dice"],
                "myocardium_dice": metrics["myocardium"]["val_mean_dice"],
                "lv_blood_pool_hd95_mm": metrics["left_ventricle"]["val_hd95"],
                "myocardium_hd95_mm": metrics["myocardium"]["val_hd95"],
                "minutes": (time.time() - start) / 60,
            }
        )
    report = {
        "command": command("sunnybrook", data_dir=data_dir, epochs=epochs, small=small),  # the command's options
        "settings": {"epochs": epochs, "spacing": list(spacing), "roi_size": list(roi_size), "small": small},
        "folds": folds,
        "mean": {k: float(np.mean([f[k] for f in folds])) for k in folds[0] if k.endswith(("dice", "mm"))},
    }
    return write_report(report, output, format_table(report))


def format_table(report: dict) -> str:
    """Per fold and their mean: LV blood pool and myocardium Dice and HD95."""
    lines = [
        "| fold | test case | LV blood pool Dice | myocardium Dice | LV HD95 mm | myo HD95 mm |",
        "|---|---|---|---|---|---|",
    ]
    for f in report["folds"]:
        lines.append(
            f"| {f['fold']} | {f['test_case']} | {f['lv_blood_pool_dice']:.3f} | {f['myocardium_dice']:.3f} | "
            f"{f['lv_blood_pool_hd95_mm']:.1f} | {f['myocardium_hd95_mm']:.1f} |"
        )
    m = report["mean"]
    lines.append(
        f"| mean | | {m['lv_blood_pool_dice']:.3f} | {m['myocardium_dice']:.3f} | {m['lv_blood_pool_hd95_mm']:.1f} "
        f"| {m['myocardium_hd95_mm']:.1f} |"
    )
    return "\n".join(lines)
