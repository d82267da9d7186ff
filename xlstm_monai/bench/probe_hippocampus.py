"""
A classification read of the label-efficiency benchmark's pretrainings, at the cost of minutes: a linear probe on the
frozen encoder predicts from the image alone whether a case's hippocampus is larger than the training folds'
median (its volume from the MSD Task04 manual label; a small hippocampus is the atrophy that marks Alzheimer's
disease). Segmentation asks for voxels, this asks what the whole volume's tokens know.

For each reported fold the probe (L2 logistic regression on the mean of the encoder's final patch tokens,
standardised; its penalty chosen by cross-validation on the training folds) trains on the other four folds' 160
cases and is scored on the fold's 40 by ROC AUC and balanced accuracy. Encoders:

- "pretrained": the label-efficiency benchmark's pretraining of that fold (same settings, same cache: run with its
  ``work_dir``), which never saw the fold's images;
- "random": random initialisations of the same encoder (``seeds``);
- "released" (``--released``): the foundation checkpoint pretrain_ssl ships, which saw every image (never a label).

With ``finetune``, the same question is also answered by fine-tuning: brain_cls (its train.yaml and evaluate.yaml,
the encoder of the benchmark's network, 1 mm and a 48 x 64 x 48 window as brain_hippocampus) trains from the fold's
pretraining and from random initialisation, paired by seed, for the same steps, validated once at the end on the
fold (no checkpoint is picked on it). Each run is a cached unit under ``work_dir/probe``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from xlstm_monai.bench.hippocampus_runs import train_and_evaluate
from xlstm_monai.bench.label_efficiency_hippocampus import label_efficiency_study
from xlstm_monai.bench.study import cache_key, command, mean_sd, paired_differences, write_report

__all__ = ["benchmark_probe_hippocampus", "fit_logistic_probe", "format_report", "hippocampus_volumes"]

PENALTIES = (1e-3, 1e-2, 1e-1, 1.0)  # L2 weight per sample of the logistic probe, chosen on the training folds
CLASSES = ["small", "large"]  # class 1: a hippocampus larger than the training folds' median


def hippocampus_volumes(cases: list[dict], source) -> np.ndarray:
    """Labeled hippocampus volume of each case in mm^3 (anterior and posterior), from its MSD label file."""
    import nibabel as nib

    volumes = []
    for case in cases:
        label = nib.load(str(source / case["label"]))
        voxel = float(np.prod(label.header.get_zooms()[:3]))
        volumes.append(float((np.asarray(label.dataobj) > 0).sum()) * voxel)
    return np.asarray(volumes)


def preprocessed_images(cases: list[dict], source) -> torch.Tensor:
    """The cases as brain_hippocampus's inference.yaml prepares them (1 mm RAS, intensity percentiles, padded to its
    window): (N, 1, *roi_size)."""
    from monai.bundle import ConfigParser

    from xlstm_monai.workflow import bundle_path

    parser = ConfigParser()
    parser.read_config(str(bundle_path("brain_hippocampus") / "configs" / "inference.yaml"))
    preprocess = parser.get_parsed_content("preprocessing")
    return torch.stack([torch.as_tensor(preprocess({"image": str(source / c["image"])})["image"]) for c in cases])


@torch.no_grad()
def mean_token_features(encoder: torch.nn.Module, images: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """(N, D): the mean of the frozen encoder's final patch tokens for each image."""
    encoder.eval()
    return torch.cat([encoder(images[i : i + batch]).tokens.mean(1) for i in range(0, len(images), batch)])


def fit_logistic_probe(x: torch.Tensor, y: torch.Tensor, penalty: float) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-penalised logistic regression by L-BFGS: weights (D,) and bias () for standardised features ``x``."""
    x, y = x.double(), y.double()
    weight = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ weight + bias, y)
        loss = loss + penalty * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def _standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    return [(t - mean) / std for t in (train, *others)]


def _auc(scores: torch.Tensor, y: torch.Tensor) -> float:
    from monai.metrics import compute_roc_auc

    return float(compute_roc_auc(scores.float(), y.float()))


def probe_fold(features: torch.Tensor, y: torch.Tensor, folds: np.ndarray, fold: int) -> dict:
    """Train the probe on every fold but ``fold`` (penalty by leave-one-fold-out AUC there), score it on ``fold``."""
    train = torch.as_tensor(folds != fold)
    inner = folds[folds != fold]

    def inner_auc(penalty: float) -> float:
        aucs = []
        for held in np.unique(inner):
            part = torch.as_tensor(inner != held)
            a, b = _standardise(features[train][part], features[train][~part])
            w, c = fit_logistic_probe(a, y[train][part], penalty)
            aucs.append(_auc(b.double() @ w + c, y[train][~part]))
        return float(np.mean(aucs))

    penalty = max(PENALTIES, key=inner_auc)
    a, b = _standardise(features[train], features[~train])
    w, c = fit_logistic_probe(a, y[train], penalty)
    scores = b.double() @ w + c
    truth, predicted = y[~train].bool(), scores > 0
    balanced = 0.5 * (float(predicted[truth].float().mean()) + float((~predicted[~truth]).float().mean()))
    return {"auc": _auc(scores, y[~train]), "balanced_accuracy": balanced, "penalty": penalty}


def encoder_settings(study) -> dict:
    """The benchmark network's settings that its encoder takes (all but the U-Net decoder's width)."""
    return {k: v for k, v in study.scale["network"].items() if k != "feature_size"}


def volume_class_datalist(study, volumes: np.ndarray, fold: int) -> Path:
    """The cases with their class for brain_cls (fold entries, paths relative to the MSD folder), for ``fold``."""
    folds = np.asarray([int(c["fold"]) for c in study.folds["training"]])
    threshold = np.median(volumes[folds != fold])
    path = study.work / "probe" / f"volume_class_fold{fold}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    cases = [
        {"image": c["image"], "label": int(v > threshold), "fold": int(c["fold"])}
        for c, v in zip(study.folds["training"], volumes)
    ]
    path.write_text(json.dumps({"training": cases}, indent=1))
    return path


def finetune_classifier(
    study, datalist: Path, fold: int, arm: str, seed: int, iterations: int, learning_rate: float, lr_scale: float
) -> dict:
    """One brain_cls run on the volume class from the fold's pretraining or random initialisation, cached."""
    architecture = encoder_settings(study)
    pretraining = study.pretrain_settings if arm == "pretrained" else None
    key = cache_key(architecture, iterations, pretraining, study.extra_unlabeled)
    scaled = f"_scale{lr_scale:g}" if arm == "pretrained" else ""
    root = study.work / "probe" / f"finetune_{key}" / f"{arm}_fold{fold}_seed{seed}_lr{learning_rate:g}{scaled}"
    overrides = {
        **{f"network_def#{k}": v for k, v in architecture.items()},
        "spacing": [1.0, 1.0, 1.0],
        "field_of_view": [48, 64, 48],
        "classes": CLASSES,
        "pretrained_checkpoint": str(study.pretrained(fold)) if arm == "pretrained" else "",
        "pretrained_lr_scale": lr_scale if arm == "pretrained" else 1.0,
    }
    record = {"read": "finetune", "arm": arm, "pretrained_lr_scale": overrides["pretrained_lr_scale"]}
    return train_and_evaluate(
        root, study.source, datalist, fold, iterations, 2, learning_rate, seed, overrides, record, bundle="brain_cls"
    )


def benchmark_probe_hippocampus(
    data_dir: str | None = None,
    folds: tuple[int, ...] = (0, 1, 2),
    seeds: tuple[int, ...] = (0, 1, 2),
    scale: str = "cpu",
    network: dict | None = None,
    pretraining: dict | None = None,
    pretrain_epochs: int | None = None,
    extra_unlabeled: list[str] | None = None,
    released: bool = False,
    finetune: bool = False,
    iterations: int = 300,
    learning_rate: float = 1e-3,
    pretrained_lr_scale: float = 0.1,
    work_dir: str = "runs/label_efficiency_hippocampus",
    output: str = "runs/probe_hippocampus.json",
) -> dict:
    """
    Args:
        data_dir, scale, network, pretraining, pretrain_epochs, extra_unlabeled, work_dir: as ``bench
            label-efficiency --task hippocampus``: the same settings read the same cached pretrainings (a missing one
            is run, as that benchmark would).
        folds: reported folds, each probed with its own pretraining.
        seeds: random initialisations of the "random" encoder.
        released: also probe the released foundation checkpoint (it saw every image, labels never).
        finetune: also fine-tune brain_cls on the question, from the pretraining and from random initialisation
            (one run per arm and seed, paired by seed), for ``iterations`` steps at ``learning_rate`` (the pretrained
            layers at ``pretrained_lr_scale`` of it). These rates are set, not tuned.
    """
    from xlstm_monai.networks import XLSTMEncoder, foundation_checkpoint, load_pretrained_encoder

    started = time.time()
    study, budgets = label_efficiency_study(
        data_dir, scale, network, pretraining, pretrain_epochs, extra_unlabeled, work_dir
    )
    cases = study.folds["training"]
    case_folds = np.asarray([int(c["fold"]) for c in cases])
    volumes = hippocampus_volumes(cases, study.source)
    images = preprocessed_images(cases, study.source)
    architecture = encoder_settings(study)

    def encoder(seed: int, checkpoint: str | None = None) -> XLSTMEncoder:
        torch.manual_seed(seed)
        net = XLSTMEncoder(in_channels=1, img_size=list(images.shape[2:]), patch_size=8, **architecture)
        if checkpoint:
            load_pretrained_encoder(net, checkpoint)
        return net

    runs = []
    arms = [("random", seed, None) for seed in seeds]
    if released:
        arms.append(("released", 0, foundation_checkpoint()))
    finetuning = [(arm, seed) for seed in seeds for arm in ("pretrained", "random")] if finetune else []
    with tqdm(total=len(folds) * (1 + len(arms) + len(finetuning)), desc="probe", unit="run") as progress:
        for fold in folds:
            # the class: larger than the median of the training folds' volumes (about half the cases)
            y = torch.as_tensor(volumes > np.median(volumes[case_folds != fold]), dtype=torch.float64)
            for arm, seed, checkpoint in [("pretrained", 0, str(study.pretrained(fold))), *arms]:
                features = mean_token_features(encoder(seed, checkpoint), images)
                result = probe_fold(features, y, case_folds, fold)
                runs.append({"read": "probe", "arm": arm, "fold": fold, "seed": seed, **result})
                progress.set_postfix_str(f"fold {fold} {arm}: AUC {result['auc']:.3f}")
                progress.update()
            datalist = volume_class_datalist(study, volumes, fold) if finetuning else None
            for arm, seed in finetuning:
                lr_scale = pretrained_lr_scale
                runs.append(finetune_classifier(study, datalist, fold, arm, seed, iterations, learning_rate, lr_scale))
                progress.set_postfix_str(f"fold {fold} fine-tuned {arm}: AUC {runs[-1]['auc']:.3f}")
                progress.update()
    report = {
        "task": "hippocampus volume above the training folds' median, linear probe on frozen mean tokens",
        "command": command(
            "probe",
            scale=scale,
            folds=folds,
            seeds=seeds,
            network=network or None,
            pretraining=pretraining or None,
            pretrain_epochs=pretrain_epochs,
            extra_unlabeled=extra_unlabeled,
            released=released or None,
            finetune=finetune or None,
            iterations=iterations if finetune else None,
            learning_rate=learning_rate if finetune else None,
            pretrained_lr_scale=pretrained_lr_scale if finetune else None,
            work_dir=work_dir,
        ),
        "data": str(study.source),
        "settings": {"network": study.scale["network"], "pretrain": study.pretrain_settings, "penalties": PENALTIES},
        "volumes_mm3": {"median": float(np.median(volumes)), "min": float(volumes.min()), "max": float(volumes.max())},
        "wall_minutes": (time.time() - started) / 60,
        "runs": runs,
    }
    return write_report(report, output, format_report(report))


def format_report(report: dict) -> str:
    """For the probe, and the fine-tuning when it ran: per fold the pretrained start's AUC, the random starts' mean
    and the paired difference."""
    tables = []
    for read in ("probe", "finetune"):
        runs = [r for r in report["runs"] if r.get("read", "probe") == read]
        if runs:
            tables.append(f"{'linear probe' if read == 'probe' else 'fine-tuned (brain_cls)'}:\n" + _table(runs))
    return "\n\n".join(tables)


def _table(runs: list[dict]) -> str:
    folds = sorted({r["fold"] for r in runs})
    arms = [a for a in ("pretrained", "random", "released") if any(r["arm"] == a for r in runs)]

    def auc(arm: str, fold: int) -> float:
        return float(np.mean([r["auc"] for r in runs if r["arm"] == arm and r["fold"] == fold]))

    lines = [
        "| fold | " + " | ".join(f"{a} AUC" for a in arms) + " | pretrained - random (AUC points) |",
        "|---|" + "---|" * (len(arms) + 1),
    ]
    gains = paired_differences({f: auc("pretrained", f) for f in folds}, {f: auc("random", f) for f in folds})
    for fold in folds:
        cells = " | ".join(f"{auc(a, fold):.3f}" for a in arms)
        lines.append(f"| {fold} | {cells} | {gains[fold]:+.1f} |")
    means = " | ".join(mean_sd([auc(a, f) for f in folds]) for a in arms)
    lines.append(f"| mean | {means} | {mean_sd(list(gains.values()), 1, signed=True)} |")
    accuracy = {a: mean_sd([r["balanced_accuracy"] for r in runs if r["arm"] == a]) for a in arms}
    lines.append("")
    lines.append("balanced accuracy: " + ", ".join(f"{a} {v}" for a, v in accuracy.items()))
    return "\n".join(lines)
