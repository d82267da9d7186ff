"""bench probe: the hippocampus volume class, a logistic probe that finds a signal where there is one and none in
noise, and the table of paired differences."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from xlstm_monai.bench.probe_hippocampus import (
    fit_logistic_probe,
    format_report,
    hippocampus_volumes,
    probe_fold,
)


def test_volumes_count_labeled_voxels_in_cubic_millimetres(tmp_path):
    label = np.zeros((10, 10, 10), np.uint8)
    label[:2, :3, :4] = 1  # 24 voxels
    label[5, 5, 5] = 2  # and one posterior
    nib.save(nib.Nifti1Image(label, np.diag([0.5, 1.0, 2.0, 1.0])), tmp_path / "case.nii.gz")
    assert hippocampus_volumes([{"label": "case.nii.gz"}], tmp_path).tolist() == [25.0]  # 1 mm^3 voxels


def test_the_logistic_probe_separates_separable_classes():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(80, 5, generator=generator)
    y = (x[:, 2] > 0).double()
    weight, bias = fit_logistic_probe(x, y, penalty=1e-3)
    assert ((x.double() @ weight + bias > 0) == y.bool()).float().mean() > 0.95
    assert weight.abs().argmax() == 2


@pytest.mark.parametrize("signal, low, high", [(2.0, 0.9, 1.0), (0.0, 0.2, 0.8)])
def test_a_probe_fold_finds_a_signal_where_there_is_one(signal, low, high):
    generator = torch.Generator().manual_seed(1)
    y = torch.arange(200) % 2
    features = torch.randn(200, 16, generator=generator)
    features[:, 0] += signal * y
    folds = np.arange(200) % 5
    result = probe_fold(features, y.double(), folds, fold=0)
    assert low <= result["auc"] <= high, result
    assert result["penalty"] in (1e-3, 1e-2, 1e-1, 1.0)


def test_the_report_pairs_pretrained_and_random_by_fold():
    runs = [
        {"arm": "pretrained", "fold": 0, "seed": 0, "auc": 0.80, "balanced_accuracy": 0.7},
        {"arm": "random", "fold": 0, "seed": 0, "auc": 0.70, "balanced_accuracy": 0.6},
        {"arm": "random", "fold": 0, "seed": 1, "auc": 0.74, "balanced_accuracy": 0.6},
        {"arm": "pretrained", "fold": 1, "seed": 0, "auc": 0.70, "balanced_accuracy": 0.6},
        {"arm": "random", "fold": 1, "seed": 0, "auc": 0.75, "balanced_accuracy": 0.6},
    ]
    table = format_report({"runs": runs})
    assert "| 0 | 0.800 | 0.720 | +8.0 |" in table
    assert "| 1 | 0.700 | 0.750 | -5.0 |" in table
    assert "| mean | 0.750 +- 0.071 | 0.735 +- 0.021 | +1.5 +- 9.2 |" in table


def test_real_cases_are_prepared_as_the_bundle_infers_and_give_one_feature_vector_each():
    from tests.conftest import shared_data
    from xlstm_monai.bench.probe_hippocampus import mean_token_features, preprocessed_images
    from xlstm_monai.networks import XLSTMEncoder

    source = shared_data("msd_hippocampus")
    cases = [{"image": "imagesTr/hippocampus_001.nii.gz", "label": "labelsTr/hippocampus_001.nii.gz"}]
    cases.append({"image": "imagesTr/hippocampus_003.nii.gz", "label": "labelsTr/hippocampus_003.nii.gz"})
    images = preprocessed_images(cases, source)
    assert images.shape == (2, 1, 48, 64, 48)  # brain_hippocampus's window
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.std() > 0.1
    assert (hippocampus_volumes(cases, source) > 1000).all()  # mm^3: a real hippocampus is a few cm^3
    encoder = XLSTMEncoder(img_size=(48, 64, 48), embed_dim=24, depth=1, num_heads=2)
    features = mean_token_features(encoder, images)
    assert features.shape == (2, 24) and not torch.allclose(features[0], features[1])


def test_the_finetuning_read_trains_brain_cls_from_the_pretraining_and_from_random(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from xlstm_monai.bench import hippocampus_runs
    from xlstm_monai.bench.probe_hippocampus import finetune_classifier, volume_class_datalist

    calls = []

    def fake_workflow(bundle, configs, workflow_type, **overrides):
        calls.append((bundle, configs, overrides))
        if "evaluate.yaml" in configs:  # MONAI's MetricsSaver: one "name,value" line per metric
            out = Path(overrides["bundle_root"]) / "eval"
            out.mkdir(parents=True)
            (out / "metrics.csv").write_text("val_auc,0.75\nval_accuracy,0.7\nval_balanced_accuracy,0.65\n")

    monkeypatch.setattr(hippocampus_runs, "run_workflow", fake_workflow)
    cases = [{"image": f"./imagesTr/h_{i}.nii.gz", "fold": i % 5} for i in range(10)]
    study = SimpleNamespace(
        folds={"training": cases},
        work=tmp_path,
        source=tmp_path,
        scale={"network": {"embed_dim": 96, "depth": 4, "num_heads": 2, "feature_size": 8}},
        pretrain_settings={"epochs": 8},
        extra_unlabeled=[],
        pretrained=lambda fold: tmp_path / f"pretrain_fold{fold}.pt",
    )
    volumes = np.arange(10, dtype=float)  # fold 0's training cases are 1-4 and 6-9: median 5, not 4.5
    datalist = volume_class_datalist(study, volumes, fold=0)
    labels = [c["label"] for c in json.loads(datalist.read_text())["training"]]
    assert labels == [0] * 6 + [1] * 4

    pretrained = finetune_classifier(study, datalist, 0, "pretrained", 0, 10, 1e-3, 0.1)
    random = finetune_classifier(study, datalist, 0, "random", 0, 10, 1e-3, 0.1)
    trained = {c[2]["pretrained_checkpoint"]: c[2] for c in calls if c[0] == "brain_cls" and c[1] == ["train.yaml"]}
    assert set(trained) == {str(tmp_path / "pretrain_fold0.pt"), ""}
    for overrides in trained.values():
        assert overrides["field_of_view"] == [48, 64, 48] and overrides["classes"] == ["small", "large"]
        assert overrides["network_def#embed_dim"] == 96 and "network_def#feature_size" not in overrides
    assert (
        trained[""]["pretrained_lr_scale"] == 1.0
        and trained[str(tmp_path / "pretrain_fold0.pt")]["pretrained_lr_scale"] == 0.1
    )
    assert pretrained["auc"] == 0.75 and pretrained["balanced_accuracy"] == 0.65 and pretrained["arm"] == "pretrained"
    assert random["read"] == "finetune" and random["labeled_cases"] == 8
    assert finetune_classifier(study, datalist, 0, "random", 0, 10, 1e-3, 0.1) == random  # read back from its cache
