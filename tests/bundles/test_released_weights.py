"""The released weights: every file listed in a bundle's large_files.yml is there with its hash, loads strictly into
the network its bundle builds as shipped, and the shipped hippocampus model segments real crops."""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import yaml
from monai.bundle import ConfigParser

from tests.conftest import REPO_ROOT, shared_data
from xlstm_monai.data import build_datalist
from xlstm_monai.networks import FOUNDATION_CHECKPOINT, load_model_weights, load_pretrained
from xlstm_monai.networks.checkpoint_file import file_hash

BUNDLES = sorted(p.parent.name for p in (REPO_ROOT / "bundles").glob("*/large_files.yml"))
RELEASED = [
    (bundle, entry)
    for bundle in BUNDLES
    for entry in yaml.safe_load((REPO_ROOT / "bundles" / bundle / "large_files.yml").read_text())["large_files"]
]
HIPPOCAMPUS = REPO_ROOT / "bundles" / "brain_hippocampus"
FOUNDATION = REPO_ROOT / "bundles" / FOUNDATION_CHECKPOINT


def _network(bundle: str, *configs: str):
    parser = ConfigParser()
    parser.read_config([str(REPO_ROOT / "bundles" / bundle / "configs" / c) for c in configs])
    return parser.get_parsed_content("network_def")


def test_the_foundation_checkpoint_and_the_hippocampus_model_are_released():
    released = {(bundle, entry["path"]) for bundle, entry in RELEASED}
    assert ("brain_hippocampus", "models/model.pt") in released
    assert ("pretrain_ssl", f"models/{FOUNDATION.name}") in released


@pytest.mark.parametrize("bundle, entry", RELEASED, ids=[f"{b}:{e['path']}" for b, e in RELEASED])
def test_every_released_file_has_its_hash_and_a_release_url(bundle, entry):
    path = REPO_ROOT / "bundles" / bundle / entry["path"]
    assert path.is_file(), f"{path} is listed in large_files.yml but missing"
    assert entry["hash_type"] == "sha256" and file_hash(path, "sha256") == entry["hash_val"]
    assert entry["url"].startswith("https://") and entry["url"].endswith(path.name)
    assert path.stat().st_size < 16 * 2**20  # small enough for the repository, the wheel and the archives


def test_the_shipped_model_fits_inference_yaml_as_shipped():
    network = _network("brain_hippocampus", "inference.yaml")
    load_model_weights(network, HIPPOCAMPUS / "models" / "model.pt")  # every key, strictly


def test_the_foundation_checkpoint_loads_into_each_brain_bundle():
    """What the model card's load report says: everything but the output layer loads (with configs/fine_tune.yaml
    where the bundle's default network is of another size)."""
    network = _network("brain_hippocampus", "train.yaml")
    unet = load_pretrained(network, FOUNDATION)
    assert not unet.missing and not unet.mismatched
    assert len(unet.loaded) + len(unet.decoder_loaded) == len(network.state_dict()) - 2  # all but the output layer
    assert all(k.startswith("out.conv.conv.") for k in unet.decoder_skipped) and len(unet.decoder_skipped) == 2
    classifier = load_pretrained(_network("brain_cls", "train.yaml", "fine_tune.yaml"), FOUNDATION)
    assert not classifier.missing and "cls_token" in classifier.loaded and classifier.resized  # a larger field of view
    heart = load_pretrained(_network("heart_seg_ct", "train.yaml", "fine_tune.yaml"), FOUNDATION)
    assert not heart.missing and len(heart.decoder_loaded) == len(unet.decoder_loaded)


@pytest.mark.realdata
def test_the_shipped_model_segments_real_crops(tmp_path):
    """`python -m monai.bundle run inference` as shipped (no training) on 12 real crops (of fold 0 of the 5-fold
    datalist, seed 0); Dice bounded below. The released model trained on all 200 cases, these too: the bound checks
    that the shipped file runs and segments; its recipe's cross-validation measures the accuracy on unseen cases."""
    hippocampus_dir = shared_data("msd_hippocampus")
    folds = build_datalist(str(hippocampus_dir), str(tmp_path / "folds.json"), num_folds=5, seed=0)
    held_out = sorted(c["image"] for c in folds["training"] if int(c["fold"]) == 0)
    images = [hippocampus_dir / name for name in held_out[::3][:12]]
    studies = tmp_path / "studies"
    studies.mkdir()
    for image in images:
        (studies / image.name).symlink_to(image)
    output = tmp_path / "seg"
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "inference", "--config_file", "configs/inference.yaml"]
        + ["--dataset_dir", str(studies), "--output_dir", str(output), "--num_workers", "0"],
        cwd=HIPPOCAMPUS,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    dice = []
    for image in images:
        label = np.asarray(nib.load(hippocampus_dir / "labelsTr" / image.name).dataobj)
        predicted = nib.load(output / image.name.replace(".nii.gz", "_seg.nii.gz"))
        assert predicted.shape == label.shape
        prediction = np.asarray(predicted.dataobj)
        for structure in (1, 2):
            a, b = prediction == structure, label == structure
            dice.append(2 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))
    assert np.mean(dice) > 0.85 and min(dice) > 0.6, dice
