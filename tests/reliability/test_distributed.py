"""
Multi-process training as torchrun runs it: two gloo processes on the CPU, the bundles' own multi_gpu_train overlays.

Each run adds a small overlay (written here) that shrinks the network and, at the end, saves every rank's weights,
so the test can compare them; the bundles' configs are used unchanged otherwise.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from tests.conftest import REPO_ROOT
from xlstm_monai.release.verify import SMOKE

SAVE_RANK_STATE = (
    "$torch.save({'network': @network.module.state_dict(), 'metrics': dict(@train#trainer.state.metrics),"
    " 'iteration': @train#trainer.state.iteration, 'extra': @rank_extra}, @bundle_root + '/rank' + str(@rank) + '.pt')"
)
FINALIZE = [SAVE_RANK_STATE, "$torch.distributed.is_initialized() and torch.distributed.destroy_process_group()"]


def _torchrun(bundle: str, root: Path, overlay: dict, timeout: int = 600) -> tuple[int, dict[int, str]]:
    """Run training of ``bundle`` under torchrun with 2 CPU processes; (exit code, {rank: its stdout + stderr})."""
    path = root / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    logs = root / "logs"
    configs = f"['configs/train.yaml','configs/multi_gpu_train.yaml','{path}']"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "--log_dir",
        str(logs),
        "--redirects",
        "3",
        "-m",
        "monai.bundle",
        "run",
        "training",
        "--config_file",
        configs,
        "--bundle_root",
        str(root),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        command, cwd=REPO_ROOT / "bundles" / bundle, env=env, capture_output=True, text=True, timeout=timeout
    )
    outputs = {}
    for rank in (0, 1):
        files = list(logs.rglob(f"attempt_0/{rank}/std*.log"))
        outputs[rank] = "\n".join(f.read_text() for f in files)
    return done.returncode, outputs


def _rank_states(root: Path) -> list[dict]:
    return [torch.load(root / f"rank{rank}.pt", weights_only=False) for rank in (0, 1)]


def _assert_identical(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0, msg=f"{key} differs across ranks")


def _supervised(extra: dict | None = None) -> dict:
    smoke = SMOKE["heart_seg_ct"]
    return {
        **smoke["network"],
        **smoke["train"],
        "epochs": 2,
        "batch_size": 1,
        "rank_extra": None,
        "finalize": FINALIZE,
        **(extra or {}),
    }


@pytest.mark.slow
def test_two_processes_train_a_bundle_with_identical_weights_and_one_writer(tmp_path):
    code, logs = _torchrun("heart_seg_ct", tmp_path, _supervised())
    assert code == 0, logs[0][-3000:] + logs[1][-3000:]
    first, second = _rank_states(tmp_path)
    assert first["iteration"] == second["iteration"] > 0
    _assert_identical(first["network"], second["network"])
    assert sorted(os.listdir(tmp_path / "models")) == ["last.pt", "model.pt"]
    writers = {path.name.split(".")[4] for path in (tmp_path / "eval").glob("events.out.tfevents.*")}
    assert len(writers) == 1  # every TensorBoard event file comes from one process: rank 0
    assert "Epoch[2] Complete" in logs[0] and "Epoch[2] Complete" not in logs[1]  # rank 1 logs warnings only
    assert logs[0].count("data check:") == 1 and "data check:" not in logs[1]  # checked once, by rank 0


@pytest.mark.slow
def test_pretraining_keeps_student_teacher_and_centre_identical_across_ranks(tmp_path):
    smoke = SMOKE["pretrain_ssl"]
    overlay = {
        **smoke["network"],
        **smoke["train"],
        "epochs": 2,
        "num_phantoms": 4,
        "batch_size": 1,
        "teacher_temp": [0.04, 0.04],
        "rank_extra": "$@loss_state.state_dict()",
        "finalize": FINALIZE,
    }
    code, logs = _torchrun("pretrain_ssl", tmp_path, overlay)
    assert code == 0, logs[0][-3000:] + logs[1][-3000:]
    first, second = _rank_states(tmp_path)
    teacher = [{k: v for k, v in s["network"].items() if k.startswith("teacher.")} for s in (first, second)]
    assert teacher[0] and first["iteration"] == second["iteration"] > 0
    _assert_identical(first["network"], second["network"])  # student and EMA teacher
    _assert_identical(first["extra"], second["extra"])  # the teacher centres
    assert torch.count_nonzero(first["extra"]["center"]) > 0
    assert sorted(os.listdir(tmp_path / "models")) == ["last.pt"]


def _nan_loss(**on_rank1) -> dict:
    """The bundle's loss, NaN on rank 1 only, on the calls NaNLoss is given (``nan_calls`` or ``nan_from``)."""
    dice_ce = {"_target_": "DiceCELoss", "include_background": False, "to_onehot_y": True, "softmax": True}
    other = {"nan_calls": "[]", "nan_from": "None"}  # NaNLoss's own defaults, on rank 0
    rank1 = {key: f"$({value!r} if @rank == 1 else {other[key]})" for key, value in on_rank1.items()}
    return {"loss": {"_target_": "tests.reliability.nan_loss.NaNLoss", "loss": dice_ce, **rank1}}


@pytest.mark.slow
def test_a_nan_on_one_rank_skips_the_same_step_on_both(tmp_path):
    code, logs = _torchrun("heart_seg_ct", tmp_path, _supervised(_nan_loss(nan_calls=[2])))
    assert code == 0, logs[0][-3000:] + logs[1][-3000:]
    first, second = _rank_states(tmp_path)
    assert first["metrics"]["skipped_steps"] == second["metrics"]["skipped_steps"] == 1
    _assert_identical(first["network"], second["network"])
    assert "non-finite loss at epoch 1, iteration 2 on another rank: step skipped" in logs[0]
    assert "non-finite loss at epoch 1, iteration 2: step skipped" in logs[1]


@pytest.mark.slow
def test_nans_on_one_rank_stop_both_ranks_cleanly(tmp_path):
    overlay = _supervised({**_nan_loss(nan_from=2), "max_nonfinite_steps": 2})
    code, logs = _torchrun("heart_seg_ct", tmp_path, overlay, timeout=300)  # a hang fails here
    assert code != 0
    stops = [
        re.search(r"training stopped: 2 non-finite losses in a row \((epoch \d+, iteration \d+)\)", logs[r])
        for r in (0, 1)
    ]
    assert stops[0] and stops[1] and stops[0].group(1) == stops[1].group(1) == "epoch 2, iteration 3"
    assert "before_divergence.pt" in os.listdir(tmp_path / "models")


def _collapse_decision(rank: int, entropies: tuple[float, float], port: int, decisions) -> None:
    from ignite.engine import Engine

    from xlstm_monai.ssl import CollapseMonitor, TrainingCollapsedError

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    monitor = CollapseMonitor(patience=1)
    engine = Engine(lambda e, b: None)
    monitor.attach(engine)
    engine.state.epoch, engine.state.output = 1, {"teacher_entropy": entropies[rank], "embedding_spread": 0.1}
    monitor._accumulate(engine)
    try:
        monitor(engine)
        decisions[rank] = "continue"
    except TrainingCollapsedError:
        decisions[rank] = "stop"
    dist.destroy_process_group()


@pytest.mark.parametrize(("entropies", "expected"), [((0.999, 0.5), "continue"), ((0.999, 0.998), "stop")])
def test_the_collapse_monitor_decides_on_the_mean_over_ranks(entropies, expected):
    """Rank 0 alone collapsed must not stop alone (the other rank would wait in its next collective forever)."""
    decisions = mp.Manager().dict()
    port = 29500 + os.getpid() % 1000
    mp.spawn(_collapse_decision, args=(entropies, port, decisions), nprocs=2, join=True)
    assert dict(decisions) == {0: expected, 1: expected}
