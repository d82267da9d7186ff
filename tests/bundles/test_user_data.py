"""A bundle meets a user's own data: the model zoo's datalist, a mistyped dataset_dir, the zoo's own checks, a wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import yaml

from tests.bundles.helpers import read_structure_metrics, run_workflow
from tests.conftest import REPO_ROOT
from xlstm_monai.networks.checkpoint_file import file_hash
from xlstm_monai.phantoms import write_hippocampus_phantoms
from xlstm_monai.release.verify import SMOKE

BUNDLES = ("heart_seg_ct", "heart_seg_mri", "brain_hippocampus", "brain_cls")
HIPPOCAMPUS_FAST = {**SMOKE["brain_hippocampus"]["network"], **SMOKE["brain_hippocampus"]["train"]}


def _monai_bundle(bundle: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m monai.bundle ARGS`` run in the bundle folder, as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args],
        cwd=cwd or REPO_ROOT / "bundles" / bundle,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_a_model_zoo_datalist_trains_and_evaluates_on_its_validation_section(tmp_path):
    """{"training": [...], "validation": [...]} without folds, as spleen_ct_segmentation's dataset_0.json."""
    task = tmp_path / "Task04"
    write_hippocampus_phantoms(str(task), 9, (24, 32, 24))
    names = sorted(os.listdir(task / "imagesTr"))
    pairs = [{"image": f"imagesTr/{n}", "label": f"labelsTr/{n}"} for n in names]
    datalist = tmp_path / "dataset_0.json"
    datalist.write_text(json.dumps({"training": pairs[:6], "validation": pairs[6:]}, indent=1))
    common = {
        **HIPPOCAMPUS_FAST,
        "bundle_root": str(tmp_path / "run"),
        "dataset_dir": str(task),
        "datalist": str(datalist),
    }
    run_workflow("brain_hippocampus", ["train.yaml"], "train", **common)
    run_workflow("brain_hippocampus", ["train.yaml", "evaluate.yaml"], "train", **common)
    assert set(read_structure_metrics(tmp_path / "run" / "eval")) == {"anterior", "posterior"}
    per_case = (tmp_path / "run" / "eval" / "val_mean_dice_raw.csv").read_text().splitlines()
    assert len(per_case) - 1 == 3 and all(n in "\n".join(per_case) for n in names[6:])  # the validation section


@pytest.mark.parametrize(
    ("configs", "command"),
    [
        ("configs/train.yaml", "training"),
        ("['configs/train.yaml','configs/evaluate.yaml']", "evaluating"),
        ("configs/inference.yaml", "inference"),
    ],
    ids=["train", "evaluate", "inference"],
)
def test_a_mistyped_dataset_dir_stops_naming_it_and_writes_nothing(tmp_path, configs, command):
    typo = tmp_path / "Task04_Hipocampus"
    done = _monai_bundle(
        "brain_hippocampus",
        "run",
        command,
        "--config_file",
        configs,
        "--bundle_root",
        str(tmp_path),
        "--dataset_dir",
        str(typo),
    )
    assert done.returncode != 0
    assert f"dataset_dir {typo} does not exist" in done.stdout + done.stderr
    assert not typo.exists() and not (tmp_path / "data").exists()  # no phantoms anywhere


def test_check_data_on_a_mistyped_dataset_dir_exits_1_naming_it(tmp_path):
    typo = tmp_path / "mmwsh"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "xlstm_monai.cli",
            "check-data",
            "--config_file",
            str(REPO_ROOT / "bundles" / "heart_seg_ct" / "configs" / "train.yaml"),
            "--bundle_root",
            str(tmp_path),
            "--dataset_dir",
            str(typo),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1 and f"dataset_dir {typo} does not exist" in done.stdout
    assert not typo.exists() and not (tmp_path / "data").exists()


def test_check_data_on_a_malformed_datalist_names_the_file_and_the_position(tmp_path):
    datalist = tmp_path / "datalist.json"
    datalist.write_text('{"training": [{"image": "a.nii.gz", label: "b.nii.gz"}]}')
    (tmp_path / "images").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "xlstm_monai.cli", "check-data", "--config_file"]
        + [str(REPO_ROOT / "bundles" / "brain_hippocampus" / "configs" / "train.yaml")]
        + ["--bundle_root", str(tmp_path), "--dataset_dir", str(tmp_path / "images"), "--datalist", str(datalist)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert f"datalist {datalist} is not valid JSON: Expecting property name" in done.stdout
    assert "at line 1 column 37" in done.stdout


@pytest.mark.parametrize("bundle", BUNDLES)
def test_verify_net_in_out_passes_with_the_model_zoos_defaults(bundle):
    done = _monai_bundle(
        bundle,
        "verify_net_in_out",
        "network_def",
        "--meta_file",
        "configs/metadata.json",
        "--config_file",
        "configs/inference.yaml",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "data shape of network is verified with no error" in done.stdout + done.stderr


@pytest.mark.slow
def test_a_wheel_install_runs_the_demo_and_finds_its_bundles(tmp_path):
    """pip install of the built wheel (not -e) in a fresh virtualenv: the bundles and their released weights come
    with the package."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(REPO_ROOT),
            "-w",
            str(wheels),
        ],
        check=True,
        cwd=tmp_path,
        timeout=600,
    )
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # the dependencies (torch, monai, xlstm, ...) come from this environment; the package itself from the wheel
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = next(p for p in sys.path if p.endswith("site-packages") and Path(p, "torch").is_dir())
    Path(site, "dependencies.pth").write_text(ours + "\n")
    wheel = next(wheels.glob("xlstm_monai-*.whl"))
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, timeout=600)
    located = subprocess.run(
        [
            str(python),
            "-c",
            "import xlstm_monai, xlstm_monai.workflow as w; "
            "print(xlstm_monai.__file__); print(w.bundle_path('heart_seg_ct'))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout.splitlines()
    assert located[0].startswith(site) and located[1].startswith(site)  # not the source checkout
    demo = subprocess.run(
        [str(env_dir / "bin" / "xlstm-monai"), "demo", "--epochs", "1", "--output_dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=1200,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "per-structure results on 4 unseen phantoms" in demo.stdout
    assert (tmp_path / "demo" / "models" / "model.pt").is_file()
    # the released model comes with the wheel, and segments from the installed bundle with no training first
    installed = Path(located[1]).parent / "brain_hippocampus"
    listing = yaml.safe_load((installed / "large_files.yml").read_text())["large_files"]
    model = next(e for e in listing if e["path"] == "models/model.pt")
    assert file_hash(installed / "models" / "model.pt", model["hash_type"]) == model["hash_val"]
    write_hippocampus_phantoms(str(tmp_path / "task"), 2, seed=3)
    infer = subprocess.run(
        [str(python), "-m", "monai.bundle", "run", "inference", "--config_file", "configs/inference.yaml"]
        + ["--dataset_dir", str(tmp_path / "task" / "imagesTr"), "--output_dir", str(tmp_path / "seg")]
        + ["--num_workers", "0"],
        capture_output=True,
        text=True,
        cwd=installed,
        timeout=600,
    )
    assert infer.returncode == 0, infer.stderr[-3000:]
    assert len(list((tmp_path / "seg").glob("*_seg.nii.gz"))) == 2
