"""Strict loading of model files: a damaged, foreign or incomplete file fails with one line naming it."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from monai.networks.nets import UNet

from xlstm_monai.networks import CheckpointError, XLSTMUNet, load_model_weights, pretrained_start, read_checkpoint
from xlstm_monai.networks.checkpoint_file import file_hash
from xlstm_monai.presets import TINY
from xlstm_monai.workflow import bundle_path


def _network(**settings):
    return XLSTMUNet(1, 3, img_size=32, feature_size=4, **{**TINY, **settings})


def _released(tmp_path, network):
    """A bundle folder whose models/model.pt is listed, with its hash, in large_files.yml."""
    path = tmp_path / "bundle" / "models" / "model.pt"
    path.parent.mkdir(parents=True)
    torch.save(network.state_dict(), path)
    listing = {"large_files": [{"path": "models/model.pt", "url": "https://x/model.pt", "hash_val": file_hash(path)}]}
    (tmp_path / "bundle" / "large_files.yml").write_text(yaml.safe_dump(listing))
    return path


def test_a_fitting_file_loads_every_weight(tmp_path):
    torch.manual_seed(0)
    source = _network()
    path = _released(tmp_path, source)
    target = load_model_weights(_network(), path)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_missing_file_names_it_and_the_fix(tmp_path):
    with pytest.raises(CheckpointError, match=r"model.pt: no such file.*download_large_files"):
        load_model_weights(_network(), tmp_path / "models" / "model.pt")


def test_truncated_file_is_named_with_the_hash_it_lacks(tmp_path):
    path = _released(tmp_path, _network())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError) as error:
        load_model_weights(_network(), path)
    message = str(error.value)
    assert message.startswith(f"{path}: damaged or truncated, cannot be read")
    assert "is not the released" in message
    assert "\n" not in message


def test_missing_key_is_named(tmp_path):
    state = _network().state_dict()
    removed = next(k for k in state if k.startswith("decoder."))
    del state[removed]
    path = tmp_path / "model.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=rf"does not fit XLSTMUNet: missing keys {removed}"):
        load_model_weights(_network(), path)


def test_foreign_network_and_other_shapes_are_named(tmp_path):
    unet = UNet(3, 1, 3, channels=(4, 8), strides=(2,))
    torch.save({"model": unet.state_dict()}, tmp_path / "unet.pt")
    with pytest.raises(
        CheckpointError, match=r"does not fit XLSTMUNet: missing keys .*\(\+\d+ more\); unexpected keys model"
    ):
        load_model_weights(_network(), tmp_path / "unet.pt")
    torch.save(_network(embed_dim=24).state_dict(), tmp_path / "narrow.pt")
    with pytest.raises(CheckpointError, match=r"shapes differ: .* vs "):
        load_model_weights(_network(), tmp_path / "narrow.pt")


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"model": {"a": torch.zeros(1)}, "note": object.__new__(_Opaque)}, path)
    with pytest.raises(CheckpointError, match="not a weights-only checkpoint"):
        read_checkpoint(path)


class _Opaque:
    pass


def test_retrained_file_warns_but_loads(tmp_path, caplog):
    path = _released(tmp_path, _network())
    torch.manual_seed(3)
    torch.save(_network().state_dict(), path)  # a model trained here replaces the released one
    with caplog.at_level(logging.WARNING):
        load_model_weights(_network(), path)
    assert "not the released one" in caplog.text


def test_deep_supervision_heads_load_into_the_inference_network(tmp_path):
    torch.save(_network(deep_supervision=2).state_dict(), tmp_path / "model.pt")
    load_model_weights(_network(), tmp_path / "model.pt")


def test_deprecated_setting_name_still_works():
    with pytest.warns(FutureWarning, match="pretrained_checkpoint"):
        assert pretrained_start("", "old.pt") == "old.pt"
    assert pretrained_start("new.pt", "") == "new.pt"
    assert pretrained_start("", "") == ""
    with pytest.raises(ValueError, match="different files"), pytest.warns(FutureWarning):
        pretrained_start("a.pt", "b.pt")


def test_bundle_cli_ends_with_one_line_naming_a_truncated_model(tmp_path):
    """What a user sees from `python -m monai.bundle run inference` with a damaged models/model.pt."""
    bundle = tmp_path / "brain_hippocampus"
    shutil.copytree(bundle_path("brain_hippocampus") / "configs", bundle / "configs")
    (bundle / "models").mkdir()
    (bundle / "models" / "model.pt").write_bytes(b"PK\x03\x04 truncated")
    images = tmp_path / "images"
    images.mkdir()
    nib.save(
        nib.Nifti1Image(np.random.default_rng(0).random((35, 50, 35), dtype=np.float32), np.eye(4)), images / "a.nii.gz"
    )
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "inference", "--config_file", "configs/inference.yaml"]
        + ["--dataset_dir", str(images), "--num_workers", "0"],
        cwd=bundle,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("models/model.pt: damaged or truncated, cannot be read"), result.stderr[-2000:]
