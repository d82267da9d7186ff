from __future__ import annotations

import os

import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor

from xlstm_monai.handlers import (
    CheckpointSaver,
    HausdorffDistanceMM,
    PerStructureMetrics,
    TrainingProgress,
    resume_checkpoint,
)


def _engine(metric: float) -> Engine:
    engine = Engine(lambda e, b: None)
    engine.state.metrics = {"val_mean_dice": metric}
    engine.state.key_metric_name = "val_mean_dice"
    return engine


def test_fixed_name_checkpoints_are_replaced_atomically(tmp_path, monkeypatch):
    net = torch.nn.Linear(2, 2)
    saver = CheckpointSaver(str(tmp_path), {"model": net}, save_interval=1, last_filename="last.pt")
    trainer = Engine(lambda e, b: None)
    saver.attach(trainer)
    trainer.run([0], max_epochs=3)
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]
    assert torch.load(tmp_path / "last.pt", weights_only=True)["weight"].shape == (2, 2)

    # a write that dies half way leaves the previous checkpoint intact and no stray file
    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    trainer.state.epoch, trainer.state.iteration = 4, 4
    with pytest.raises(KeyboardInterrupt):
        saver.last(trainer)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]
    assert "weight" in torch.load(tmp_path / "last.pt", weights_only=True)


def test_best_checkpoint_survives_a_worse_epoch_after_resume(tmp_path):
    net = torch.nn.Linear(2, 2)
    best = CheckpointSaver(str(tmp_path), {"model": net}, save_key_metric=True, key_metric_filename="model.pt")
    evaluator = _engine(0.8)
    evaluator.state.best_metric, evaluator.state.best_metric_epoch = 0.8, 4
    best.best(evaluator)
    state = TrainingProgress(evaluator, best).state_dict()
    assert state["best_metric"] == 0.8 and state["best_metric_epoch"] == 4

    # a new process: fresh saver and evaluator, restored from the saved progress
    best2 = CheckpointSaver(
        str(tmp_path), {"model": torch.nn.Linear(2, 2)}, save_key_metric=True, key_metric_filename="model.pt"
    )
    evaluator2 = _engine(0.5)
    TrainingProgress(evaluator2, best2).load_state_dict(state)
    assert evaluator2.state.best_metric == 0.8 and evaluator2.state.best_metric_epoch == 4
    before = torch.load(tmp_path / "model.pt", weights_only=True)["weight"]
    best2.best(evaluator2)  # 0.5 < 0.8: must not overwrite the best model
    torch.testing.assert_close(torch.load(tmp_path / "model.pt", weights_only=True)["weight"], before)


def test_resume_checkpoint(tmp_path):
    assert resume_checkpoint(str(tmp_path)) is None
    (tmp_path / "last.pt").write_bytes(b"x")
    assert resume_checkpoint(str(tmp_path)) == str(tmp_path / "last.pt")
    assert resume_checkpoint(str(tmp_path), resume=False) is None


def test_hausdorff_is_in_millimetres():
    affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))
    pred = torch.zeros(2, 12, 12, 12)
    label = torch.zeros(2, 12, 12, 12)
    pred[1, 2:6, 2:6, 2:6] = 1
    label[1, 4:8, 2:6, 2:6] = 1  # shifted by 2 voxels = 4 mm
    pred[0], label[0] = 1 - pred[1], 1 - label[1]
    metric = HausdorffDistanceMM(include_background=False, percentile=95)
    engine = Engine(lambda e, b: None)
    metric.attach(engine, "hd95")
    metric.update(([MetaTensor(pred, affine=affine)], [MetaTensor(label, affine=affine)]))
    assert metric.compute() == pytest.approx(4.0)


def test_per_structure_summary_names_structures(tmp_path, caplog):
    engine = Engine(lambda e, b: None)
    engine.state.metric_details = {"dice": torch.tensor([[0.9, float("nan")], [0.7, 0.5]])}
    handler = PerStructureMetrics(["dice"], ["lv", "rv"], output_dir=str(tmp_path))
    handler.attach(engine)
    engine.fire_event(Events.EPOCH_COMPLETED)
    assert handler.summary == {"lv": {"dice": pytest.approx(0.8)}, "rv": {"dice": pytest.approx(0.5)}}
    assert (tmp_path / "per_structure_metrics.csv").read_text().splitlines()[1].startswith("lv,0.8")
