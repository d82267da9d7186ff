"""brain_hippocampus: MSD Task04 read unchanged; train -> evaluate -> infer on real crops (phantoms without them)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from tests.bundles.helpers import SMALL_UNET, config_path, load_json, load_yaml, read_structure_metrics, run_workflow
from tests.conftest import SHARED_DATA
from xlstm_monai.data import default_datalist
from xlstm_monai.phantoms import write_hippocampus_phantoms
from xlstm_monai.presets import TINY, overrides

BUNDLE = "brain_hippocampus"
FAST = {**SMALL_UNET, "network_def#feature_size": 16, "num_workers": 0, "learning_rate": 1.0e-2, "warmup_epochs": 2}


def _thirty_cases(tmp_path) -> tuple[str, str]:
    """(dataset_dir, datalist): 20 training and 10 validation cases, real when ../shared/data is there."""
    task = SHARED_DATA / "msd_hippocampus"
    if not (task / "dataset.json").is_file():
        task = tmp_path / "phantoms"
        write_hippocampus_phantoms(str(task), 30, seed=0)
    entries = json.loads((task / "dataset.json").read_text())["training"][:30]
    training = [dict(e, fold=0 if i < 10 else 1) for i, e in enumerate(entries)]
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": training, "unlabeled": [], "testing": []}))
    return str(task), str(datalist)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp(BUNDLE)
    dataset_dir, datalist = _thirty_cases(root)
    common = {**FAST, "bundle_root": str(root), "dataset_dir": dataset_dir, "datalist": datalist}
    run_workflow(BUNDLE, ["train.yaml"], "train", epochs=25, val_interval=25, **common)
    run_workflow(BUNDLE, ["train.yaml", "evaluate.yaml"], "train", **common)
    return root, common


def test_metadata_and_network_shapes():
    from monai.bundle import verify_net_in_out

    meta = load_json(config_path(BUNDLE, "metadata.json"))
    assert meta["version"] in meta["changelog"]
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {
        "0": "background",
        "1": "anterior",
        "2": "posterior",
    }
    verify_net_in_out(
        net_id="network_def",
        meta_file=config_path(BUNDLE, "metadata.json"),
        config_file=config_path(BUNDLE, "inference.yaml"),
        n=2,
        **overrides(TINY),
    )
    assert load_yaml(BUNDLE, "train.yaml")["network_def"] == load_yaml(BUNDLE, "inference.yaml")["network_def"]


@pytest.mark.slow
def test_twenty_cases_reach_dice_on_ten_others(trained):
    root, _ = trained
    metrics = read_structure_metrics(root / "eval")
    assert list(metrics) == ["anterior", "posterior"]
    dice = np.mean([m["val_mean_dice"] for m in metrics.values()])
    assert dice >= 0.60, (
        f"mean Dice {dice:.3f} (anterior {metrics['anterior']['val_mean_dice']:.3f}, "
        f"posterior {metrics['posterior']['val_mean_dice']:.3f})"
    )
    assert all(np.isfinite(m["val_hd95"]) for m in metrics.values())


@pytest.mark.slow
def test_inference_lands_on_the_input_grid(trained, tmp_path):
    _, common = trained
    source = f"{common['dataset_dir']}/imagesTr"
    overrides = {k: v for k, v in common.items() if k.startswith(("network_def", "num_workers", "bundle_root"))}
    run_workflow(
        BUNDLE,
        ["inference.yaml"],
        "infer",
        dataset_dir=source,
        input_pattern="hippocampus_00*.nii.gz",
        output_dir=str(tmp_path),
        **overrides,
    )
    outputs = sorted(tmp_path.glob("*_seg.nii.gz"))
    assert outputs
    for output in outputs:
        original = nib.load(f"{source}/{output.name.replace('_seg', '')}")
        seg = nib.load(output)
        assert seg.shape == original.shape and np.allclose(seg.affine, original.affine)
        assert set(np.unique(np.asarray(seg.dataobj)).tolist()) <= {0, 1, 2}


def test_default_config_reads_an_msd_task_unchanged(tmp_path):
    """Pointing dataset_dir at an MSD folder is enough: the datalist of 5 folds is built from dataset.json."""
    from monai.bundle import ConfigParser

    task = tmp_path / "Task04_Hippocampus"
    write_hippocampus_phantoms(str(task), 10, seed=3)
    parser = ConfigParser()
    parser.read_config(config_path(BUNDLE, "train.yaml"))
    parser.update({"bundle_root": str(tmp_path), "dataset_dir": str(task)})
    train, val = parser.get_parsed_content("train_data"), parser.get_parsed_content("val_data")
    assert len(train) == 8 and len(val) == 2
    assert all(c["image"].startswith(str(task)) and c["label"].endswith(".nii.gz") for c in train + val)
    built = default_datalist(tmp_path, task)
    assert built.startswith(str(tmp_path / "data" / "datalists")) and json.loads(open(built).read())["num_folds"] == 5
    assert not (tmp_path / "data" / "phantoms_hippocampus").exists()


def test_deep_supervision_trains_and_evaluates_through_the_bundle_configs(tmp_path):
    """One override turns it on: the loss takes the list, metrics and evaluation read the full-resolution output."""
    import torch

    task = tmp_path / "phantoms"
    write_hippocampus_phantoms(str(task), 6, seed=1)
    common = {
        **overrides(TINY),
        "network_def#deep_supervision": 2,
        "bundle_root": str(tmp_path),
        "dataset_dir": str(task),
        "num_workers": 0,
        "batch_size": 2,
    }
    run_workflow(BUNDLE, ["train.yaml"], "train", epochs=2, val_interval=2, warmup_epochs=1, **common)
    state = torch.load(tmp_path / "models" / "model.pt", map_location="cpu")
    assert sum(k.startswith("decoder.deep_supervision_heads.") for k in state) == 4  # 1/2 and 1/4 stage heads
    run_workflow(BUNDLE, ["train.yaml", "evaluate.yaml"], "train", **common)
    metrics = read_structure_metrics(tmp_path / "eval")
    assert set(metrics) == {"anterior", "posterior"}
    assert all(0.0 <= m["val_mean_dice"] <= 1.0 for m in metrics.values())
    # inference.yaml as shipped (no deep supervision heads) loads the checkpoint and segments
    network = {k: v for k, v in common.items() if k.startswith("network_def") and k != "network_def#deep_supervision"}
    images = tmp_path / "images"
    images.mkdir()
    (images / "case.nii.gz").symlink_to(sorted((task / "imagesTr").glob("*.nii.gz"))[0])
    run_workflow(
        BUNDLE,
        ["inference.yaml"],
        "infer",
        bundle_root=str(tmp_path),
        dataset_dir=str(images),
        output_dir=str(tmp_path / "out"),
        num_workers=0,
        **network,
    )
    assert len(list((tmp_path / "out").glob("*_seg.nii.gz"))) == 1
