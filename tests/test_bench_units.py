"""Cached benchmark units: one process per unit, and the label-efficiency ablation's settings reach every run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HOLD_LOCK = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1]); lock.acquire()
print("held", flush=True); time.sleep(120)
"""


def _fake_workflow(calls: list):
    def run(bundle, configs, workflow_type, **overrides):
        calls.append((bundle, configs, overrides))
        if "evaluate.yaml" in configs:
            out = Path(overrides["bundle_root"]) / "eval"
            out.mkdir(parents=True)
            (out / "per_structure_metrics.csv").write_text(
                "structure,val_mean_dice,val_hd95\nanterior,0.8,2.0\nposterior,0.9,1.0\n"
            )

    return run


def test_a_unit_run_by_another_process_raises_and_keeps_its_files(tmp_path, monkeypatch):
    from xlstm_monai.bench import hippocampus_runs

    calls = []
    monkeypatch.setattr(hippocampus_runs, "run_workflow", _fake_workflow(calls))
    datalist = tmp_path / "fold0.json"
    datalist.write_text(json.dumps({"training": [{"fold": f % 5} for f in range(10)]}))
    root = tmp_path / "unit"
    (root / "models").mkdir(parents=True)
    (root / "models" / "in_progress.pt").write_bytes(b"weights")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, f"{root}.lock"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RuntimeError, match="being run by another process"):
            hippocampus_runs.train_and_evaluate(root, tmp_path, datalist, 0, 8, 2, 0.01)
        assert (root / "models" / "in_progress.pt").read_bytes() == b"weights" and calls == []
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: its lock went with it, and the interrupted unit starts again
    result = hippocampus_runs.train_and_evaluate(root, tmp_path, datalist, 0, 8, 2, 0.01)
    assert result["dice"] == pytest.approx(0.85) and len(calls) == 2


def _fake_label_efficiency(tmp_path, monkeypatch):
    """An MSD folder of 10 cases in 5 folds, and workflows that only record their calls (pretraining writes an
    export): the label-efficiency benchmark runs end to end in seconds. Returns the folder and the calls."""
    from xlstm_monai.bench import hippocampus_runs
    from xlstm_monai.bench import label_efficiency_hippocampus as bench

    source = tmp_path / "msd"
    (source / "imagesTr").mkdir(parents=True)
    cases = [{"image": f"./imagesTr/hippocampus_{i:03d}.nii.gz", "label": f"./labelsTr/{i}.nii.gz"} for i in range(10)]
    (source / "dataset.json").write_text(json.dumps({"training": cases, "labels": {"0": "background"}}))

    def fake_datalist(src, path, **kwargs):
        folds = [{"image": c["image"], "label": c["label"], "fold": i % 5} for i, c in enumerate(cases)]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps({"training": folds}))
        return {"training": folds}

    calls = []
    workflow = _fake_workflow(calls)

    def pretrain_workflow(bundle, configs, workflow_type, **overrides):
        workflow(bundle, configs, workflow_type, **overrides)
        if "export.yaml" in configs:
            (Path(overrides["bundle_root"]) / "models").mkdir(parents=True, exist_ok=True)
            weights = {"encoder.w": torch.zeros(1), "decoder.w": torch.zeros(1)}
            export = {"state_dict": weights, "hyper_parameters": {"decoder": {"feature_size": 8}}}
            torch.save(export, Path(overrides["bundle_root"]) / "models" / "pretrained.pt")

    monkeypatch.setattr(bench, "build_datalist", fake_datalist)
    monkeypatch.setattr(bench, "run_workflow", pretrain_workflow)
    monkeypatch.setattr(hippocampus_runs, "run_workflow", workflow)
    return source, calls


def test_the_label_efficiency_ablation_reaches_pretraining_and_both_arms(tmp_path, monkeypatch):
    from xlstm_monai.bench import label_efficiency_hippocampus as bench

    source, calls = _fake_label_efficiency(tmp_path, monkeypatch)
    report = bench.benchmark_label_efficiency_hippocampus(
        data_dir=str(source),
        fractions=(0.5,),
        folds=(0,),
        seeds=(0,),
        recipe={"random": {"learning_rate": 0.01}, "pretrained": {"learning_rate": 0.03}},
        network={"token_mixer": "none"},
        work_dir=str(tmp_path / "work"),
        output=str(tmp_path / "report.json"),
    )
    pretraining = [o for b, c, o in calls if b == "pretrain_ssl"]
    finetuning = [o for b, c, o in calls if b == "brain_hippocampus" and c == ["train.yaml"]]
    assert pretraining and all(o["encoder_def#token_mixer"] == "none" for o in pretraining)
    assert all(o["collapse_patience"] > o["epochs"] for o in pretraining)  # a constant class token is the ablation
    assert len(finetuning) == 2 and all(o["network_def#token_mixer"] == "none" for o in finetuning)
    assert {o["pretrained_checkpoint"] != "" for o in finetuning} == {True, False}  # one arm from the export
    assert report["settings"]["network"]["token_mixer"] == "none"
    assert """--network '{"token_mixer":"none"}'""" in report["command"]


def test_an_interrupted_unit_continues_from_its_last_epoch_and_counts_only_kept_training(tmp_path, monkeypatch):
    """A unit with an epoch checkpoint resumes it (no lost hours); one stopped before any epoch starts again."""
    from xlstm_monai.bench import hippocampus_runs

    calls = []
    monkeypatch.setattr(hippocampus_runs, "run_workflow", _fake_workflow(calls))
    datalist = tmp_path / "fold0.json"
    datalist.write_text(json.dumps({"training": [{"fold": f % 5} for f in range(10)]}))
    root = tmp_path / "unit"
    (root / "models").mkdir(parents=True)
    (root / "models" / "last.pt").write_bytes(b"epoch 5")
    result = hippocampus_runs.train_and_evaluate(root, tmp_path, datalist, 0, 8, 2, 0.01)
    training = [c for c in calls if "evaluate.yaml" not in c[1]]
    assert len(training) == 1 and training[0][2]["resume"] is True
    assert result["train_minutes"] is None and result["sittings"] == 2  # the first sitting kept no record

    # stopped before its first epoch ended: nothing to continue from, so the folder is cleared
    root2 = tmp_path / "unit2"
    (root2 / "eval").mkdir(parents=True)
    (root2 / "eval" / "stale.csv").write_text("x")
    hippocampus_runs.train_and_evaluate(root2, tmp_path, datalist, 0, 8, 2, 0.01)
    assert not (root2 / "eval" / "stale.csv").exists()
    assert json.loads((root2 / "result.json").read_text())["train_minutes"] >= 0


def test_a_unit_trained_to_the_end_but_not_evaluated_is_only_evaluated(tmp_path, monkeypatch):
    from xlstm_monai.bench import hippocampus_runs

    calls = []
    monkeypatch.setattr(hippocampus_runs, "run_workflow", _fake_workflow(calls))
    datalist = tmp_path / "fold0.json"
    datalist.write_text(json.dumps({"training": [{"fold": f % 5} for f in range(10)]}))
    root = tmp_path / "unit"
    (root / "models").mkdir(parents=True)
    (root / "models" / "model.pt").write_bytes(b"final")
    result = hippocampus_runs.train_and_evaluate(root, tmp_path, datalist, 0, 8, 2, 0.01)
    assert [c[1] for c in calls] == [["train.yaml", "evaluate.yaml"]] and result["dice"] == pytest.approx(0.85)


def test_sittings_count_each_to_its_last_checkpoint(tmp_path):
    import os
    import time

    from xlstm_monai.bench.hippocampus_runs import start_sitting, training_minutes

    (tmp_path / "models").mkdir()
    start_sitting(tmp_path)
    first = json.loads((tmp_path / "sittings.json").read_text())[0]["start"]
    last = tmp_path / "models" / "last.pt"
    last.write_bytes(b"x")
    os.utime(last, (first + 600, first + 600))  # the first sitting's last checkpoint, 10 minutes in
    start_sitting(tmp_path)  # the time after that checkpoint was lost to the interruption
    minutes, sittings = training_minutes(tmp_path)
    assert sittings == 2 and 10 <= minutes < 10 + (time.time() - first) / 60 + 1e-6


def test_the_pretraining_budget_axis_runs_each_budget_against_the_same_random_runs(tmp_path, monkeypatch):
    from xlstm_monai.bench import label_efficiency_hippocampus as bench

    source, calls = _fake_label_efficiency(tmp_path, monkeypatch)
    output = tmp_path / "report.json"
    report = bench.benchmark_label_efficiency_hippocampus(
        data_dir=str(source),
        fractions=(0.5,),
        folds=(0,),
        seeds=(0,),
        pretrain_epochs=(2, 4),
        recipe={"random": {"learning_rate": 0.01}, "pretrained": {"learning_rate": 0.03}},
        work_dir=str(tmp_path / "work"),
        output=str(output),
    )
    pretraining = [o["epochs"] for b, c, o in calls if b == "pretrain_ssl" and "export.yaml" not in c]
    finetuning = [o["pretrained_checkpoint"] for b, c, o in calls if b == "brain_hippocampus" and c == ["train.yaml"]]
    assert pretraining == [2, 4]
    assert len(finetuning) == 3 and finetuning.count("") == 1  # one random run serves both budgets
    assert len(set(finetuning)) == 3  # each budget fine-tunes from its own pretraining
    pretrained = sorted((r for r in report["runs"] if r["arm"] == "pretrained"), key=lambda r: r["pretrain_epochs"])
    assert [(r["pretrain_epochs"], r["pretrain_crops"]) for r in pretrained] == [(2, 16), (4, 32)]  # 8 images
    assert [(row["pretrain_crops"], row["pairs"]) for row in report["scaling"]] == [(16, 1), (32, 1)]
    assert output.with_suffix(".png").stat().st_size > 1000
    table = bench.format_report(report)
    assert "crops seen" in table and "| 50% | 8 | 2 | 16 |" in table and "| 50% | 8 | 4 | 32 |" in table
    assert "--pretrain_epochs 2,4" in report["command"]


def test_a_pretraining_lever_gets_its_own_pretraining_and_reuses_the_random_runs(tmp_path, monkeypatch):
    from xlstm_monai.bench import label_efficiency_hippocampus as bench

    source, calls = _fake_label_efficiency(tmp_path, monkeypatch)
    common = {
        "data_dir": str(source),
        "fractions": (0.5,),
        "folds": (0,),
        "seeds": (0,),
        "recipe": {"random": {"learning_rate": 0.01}, "pretrained": {"learning_rate": 0.03}},
        "work_dir": str(tmp_path / "work"),
        "output": str(tmp_path / "report.json"),
    }
    bench.benchmark_label_efficiency_hippocampus(**common)
    lever = {"sparse_restoration": True, "mask_ratio": 0.75}
    report = bench.benchmark_label_efficiency_hippocampus(**common, pretraining=lever)
    pretraining = [o for b, c, o in calls if b == "pretrain_ssl" and "export.yaml" not in c]
    finetuning = [o["pretrained_checkpoint"] for b, c, o in calls if b == "brain_hippocampus" and c == ["train.yaml"]]
    assert [o.get("sparse_restoration") for o in pretraining] == [None, True]
    assert pretraining[1]["mask_ratio"] == 0.75 and pretraining[1]["epochs"] == pretraining[0]["epochs"]
    assert len(finetuning) == 3 and finetuning.count("") == 1  # the random run of the first call is read back
    assert report["settings"]["pretrain"]["sparse_restoration"] is True
    assert '--pretraining \'{"sparse_restoration":true,"mask_ratio":0.75}\'' in report["command"]
    with pytest.raises(ValueError, match="budget is pretrain_epochs"):
        bench.benchmark_label_efficiency_hippocampus(**common, pretraining={"epochs": 3})


def test_the_encoder_only_arm_starts_from_the_encoder_of_the_same_pretraining(tmp_path, monkeypatch):
    from xlstm_monai.bench import label_efficiency_hippocampus as bench

    source, calls = _fake_label_efficiency(tmp_path, monkeypatch)
    report = bench.benchmark_label_efficiency_hippocampus(
        data_dir=str(source),
        fractions=(0.5,),
        folds=(0,),
        seeds=(0,),
        recipe={"random": {"learning_rate": 0.01}, "pretrained": {"learning_rate": 0.03, "pretrained_lr_scale": 0.1}},
        encoder_only=True,
        work_dir=str(tmp_path / "work"),
        output=str(tmp_path / "report.json"),
    )
    finetuning = {
        Path(o["pretrained_checkpoint"]).name: o
        for b, c, o in calls
        if b == "brain_hippocampus" and c == ["train.yaml"]
    }
    assert set(finetuning) == {"pretrained.pt", "encoder_only.pt", ""}  # one pretraining, three starts
    assert finetuning["encoder_only.pt"]["pretrained_lr_scale"] == 0.1  # the pretrained arm's recipe
    stripped = torch.load(finetuning["encoder_only.pt"]["pretrained_checkpoint"], weights_only=True)
    assert list(stripped["state_dict"]) == ["encoder.w"] and "decoder" not in stripped["hyper_parameters"]
    assert sorted(r["arm"] for r in report["runs"]) == ["encoder_only", "pretrained", "random"]
    assert "encoder only, 50% labels: 0.850 +- 0.000; minus random +0.0" in bench.format_report(report)
    assert "--encoder_only True" in report["command"]
