"""
Hippocampus accuracy, the claim users check first: k-fold cross-validation of brain_hippocampus on an MSD
Task04 folder, with MONAI's UNet trained the same way in the same run as the reference.

Every fold trains through the bundle's own train.yaml and is scored by its evaluate.yaml (Dice per structure on
the original grids), so the figures are those of the shipped pipeline. Writes JSON and prints the table. The
reference figure from the literature is nnU-Net's Decathlon result, about 0.90 anterior / 0.89 posterior.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from xlstm_monai.bench.datasets import shared_dataset
from xlstm_monai.data import build_datalist
from xlstm_monai.presets import SMALL, overrides
from xlstm_monai.workflow import read_structure_metrics, run_workflow

__all__ = ["benchmark_hippocampus"]

UNET = {
    "_target_": "UNet",
    "spatial_dims": 3,
    "in_channels": 1,
    "out_channels": 3,
    "channels": [32, 64, 128, 256, 512],
    "strides": [2, 2, 2, 2],
    "num_res_units": 2,
}
SMALL_XLSTM = overrides(SMALL, feature_size=16)


def benchmark_hippocampus(
    data_dir: str | None = None,
    folds: tuple[int, ...] = (0, 1, 2, 3, 4),
    epochs: int | None = None,
    small: bool = False,
    learning_rate: float | None = None,
    output: str = "runs/bench_hippocampus.json",
    work_dir: str | None = None,
) -> dict:
    """
    Args:
        data_dir: MSD Task04 folder; default $XLSTM_MONAI_DATA/msd_hippocampus or ../shared/data beside the checkout.
        folds: which of the 5 folds to run (a CPU run does one).
        epochs: training epochs; default the bundle's.
        small: a small XLSTMUNet (embed 96, 4 blocks) instead of the default network, for CPU runs.
        learning_rate: default the bundle's (both networks get the same).
    """
    source = shared_dataset("msd_hippocampus", data_dir)
    if not (source / "dataset.json").is_file():
        raise FileNotFoundError(f"no MSD dataset.json in {source}")
    work = Path(work_dir or tempfile.mkdtemp(prefix="hippocampus_"))
    datalist = work / "datalist.json"
    build_datalist(str(source), str(datalist), num_folds=5, seed=0)
    common = {"dataset_dir": str(source), "datalist": str(datalist), "resume": False}
    if epochs is not None:
        common["epochs"] = epochs
    if learning_rate is not None:
        common["learning_rate"] = learning_rate
    rows = []
    for fold in folds:
        for name, network in (("XLSTMUNet", SMALL_XLSTM if small else {}), ("UNet", {"network_def": UNET})):
            root = work / f"{name}_fold{fold}"
            start = time.time()
            overrides = {**common, **network, "bundle_root": str(root), "fold": fold}
            run_workflow("brain_hippocampus", ["train.yaml"], "train", **overrides)
            run_workflow("brain_hippocampus", ["train.yaml", "evaluate.yaml"], "train", **overrides)
            metrics = read_structure_metrics(root / "eval")
            rows.append(
                {
                    "network": name,
                    "fold": fold,
                    "anterior": metrics["anterior"]["val_mean_dice"],
                    "posterior": metrics["posterior"]["val_mean_dice"],
                    "anterior_hd95_mm": metrics["anterior"]["val_hd95"],
                    "posterior_hd95_mm": metrics["posterior"]["val_hd95"],
                    "minutes": (time.time() - start) / 60,
                }
            )
            print(
                f"  fold {fold} {name:9s}: anterior {rows[-1]['anterior']:.3f} posterior {rows[-1]['posterior']:.3f}",
                flush=True,
            )
    summary = {}
    for name in ("XLSTMUNet", "UNet"):
        mine = [r for r in rows if r["network"] == name]
        summary[name] = {k: float(np.mean([r[k] for r in mine])) for k in ("anterior", "posterior")}
        summary[name]["mean"] = (summary[name]["anterior"] + summary[name]["posterior"]) / 2
    report = {"folds": list(folds), "epochs": epochs, "small": small, "runs": rows, "summary": summary}
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(report, indent=2))
    print("| network | fold | anterior Dice | posterior Dice | minutes |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['network']} | {r['fold']} | {r['anterior']:.3f} | {r['posterior']:.3f} | {r['minutes']:.1f} |")
    for name, s in summary.items():
        print(f"| {name} | mean | {s['anterior']:.3f} | {s['posterior']:.3f} | (both: {s['mean']:.3f}) |")
    print(f"written: {output}")
    return report
