"""A run killed mid-epoch resumes where it was; a diverging loss is skipped, then stops the run; seeds reproduce."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigWorkflow

from tests.bundles.helpers import config_path, run_workflow
from tests.reliability.conftest import TINY_RUN
from xlstm_monai.handlers import TrainingDivergedError

EPOCHS = 6


def _command(root, data):
    overrides = {**TINY_RUN, "bundle_root": str(root), "dataset_dir": str(data), "epochs": EPOCHS}
    args = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "training",
        "--config_file",
        config_path("heart_seg_ct", "train.yaml"),
    ]
    for key, value in overrides.items():
        args += [f"--{key}", json.dumps(value)]
    return args


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume(phantom_set, tmp_path):
    data, _ = phantom_set
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        _command(tmp_path, data), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    killed_in = None
    for line in process.stdout:  # kill during the second iteration of epoch 3
        if "Epoch: 3/6, Iter: 2/" in line:
            process.send_signal(signal.SIGKILL)
            killed_in = line
            break
    process.wait(timeout=120)
    assert killed_in is not None and process.returncode == -signal.SIGKILL

    before = torch.load(tmp_path / "models" / "last.pt", weights_only=False)
    torch.load(tmp_path / "models" / "model.pt", weights_only=True)  # every checkpoint file loads
    iterations_per_epoch = before["trainer"]["epoch_length"]
    assert before["trainer"]["iteration"] == 2 * iterations_per_epoch  # the last complete epoch
    best_before = before["progress"]["best_metric"]
    assert 0.0 <= best_before <= 1.0

    resumed = subprocess.run(_command(tmp_path, data), capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert "Epoch: 3/6, Iter: 1/" in log and "Epoch: 1/6, Iter: 1/" not in log  # continues, does not restart
    after = torch.load(tmp_path / "models" / "last.pt", weights_only=False)
    assert after["trainer"]["iteration"] == EPOCHS * iterations_per_epoch
    # the optimizer and the scheduler continued from their saved state: one step per iteration in all
    steps = {int(s["step"]) for s in after["optimizer"]["state"].values()}
    assert steps == {EPOCHS * iterations_per_epoch}
    assert after["lr_scheduler"]["last_epoch"] == EPOCHS * iterations_per_epoch
    assert after["progress"]["best_metric"] >= best_before  # the best metric was carried over, not reset
    for name in os.listdir(tmp_path / "models"):
        if name.endswith(".pt"):
            torch.load(tmp_path / "models" / name, weights_only=False)


def _train(root, data, **overrides):
    return run_workflow(
        "heart_seg_ct",
        ["train.yaml"],
        "train",
        bundle_root=str(root),
        dataset_dir=str(data),
        **{**TINY_RUN, **overrides},
    )


NAN_LOSS = {
    "_target_": "tests.reliability.nan_loss.NaNLoss",
    "loss": {"_target_": "DiceCELoss", "include_background": False, "to_onehot_y": True, "softmax": True},
}


def test_a_nan_loss_is_skipped_and_counted(phantom_set, tmp_path):
    data, _ = phantom_set
    workflow = _train(tmp_path, data, epochs=2, loss={**NAN_LOSS, "nan_calls": [3]})
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert trainer.state.metrics["skipped_steps"] == 1
    network = workflow.parser.get_parsed_content("network")
    assert all(torch.isfinite(p).all() for p in network.parameters())


def test_a_diverging_run_stops_and_keeps_the_network_from_before(phantom_set, tmp_path):
    data, _ = phantom_set
    with pytest.raises(Exception) as error:
        _train(tmp_path, data, epochs=5, loss={**NAN_LOSS, "nan_from": 4}, max_nonfinite_steps=3)
    chain = [error.value]
    while chain[-1].__cause__ or chain[-1].__context__:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    diverged = [e for e in chain if isinstance(e, TrainingDivergedError)]
    assert diverged and "3 non-finite losses in a row" in str(diverged[0])
    saved = torch.load(tmp_path / "models" / "before_divergence.pt", weights_only=True)["model"]
    assert saved and all(torch.isfinite(v).all() for v in saved.values())


def test_fixed_seed_gives_the_same_loss_curve(phantom_set, tmp_path):
    data, _ = phantom_set
    curves = []
    for run in range(2):
        losses = []
        workflow_root = tmp_path / f"run{run}"
        workflow = ConfigWorkflow(
            config_file=config_path("heart_seg_ct", "train.yaml"),
            workflow_type="train",
            bundle_root=str(workflow_root),
            dataset_dir=str(data),
            **{**TINY_RUN, "epochs": 2, "cache_rate": 1.0},
        )
        workflow.initialize()
        trainer = workflow.parser.get_parsed_content("train#trainer")
        trainer.add_event_handler(
            Events.ITERATION_COMPLETED, lambda e, out=losses: out.append(float(e.state.output[0]["loss"]))
        )
        workflow.run()
        workflow.finalize()
        curves.append(losses)
    assert len(curves[0]) >= 4 and curves[0] == curves[1]
