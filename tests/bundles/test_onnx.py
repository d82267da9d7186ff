"""ONNX: the model zoo's onnx_export of each segmentation network at its ROI, run by ONNX Runtime, equals PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from tests.bundles.helpers import config_path, run_workflow
from tests.conftest import REPO_ROOT
from xlstm_monai.networks import OnnxNetwork, export_bundle_onnx
from xlstm_monai.presets import TINY, overrides

TINY_UNET = overrides(TINY, feature_size=8)


def _export(bundle: str, root) -> tuple[torch.nn.Module, list[int], str]:
    """A tiny network of the bundle saved as model.pt, and its onnx_export at the bundle's own ROI."""
    parser = ConfigParser()
    parser.read_config(config_path(bundle, "inference.yaml"))
    parser.update(TINY_UNET)
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def").eval()
    (root / "models").mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), root / "models" / "model.pt")
    shape = [1, 1, *parser.get_parsed_content("roi_size")]
    export_bundle_onnx(
        REPO_ROOT / "bundles" / bundle, root / "models" / "model.pt", root / "models" / "model.onnx", shape, TINY_UNET
    )
    return network, shape, str(root / "models" / "model.onnx")


@pytest.mark.slow
@pytest.mark.parametrize("bundle", ["heart_seg_ct", "heart_seg_mri", "brain_hippocampus"])
def test_onnx_runtime_equals_pytorch_at_the_roi(bundle, tmp_path):
    network, shape, path = _export(bundle, tmp_path)
    x = torch.rand(2, *shape[1:])  # two windows, as a sliding-window batch
    with torch.no_grad():
        eager = network(x)
    onnx = OnnxNetwork(path)(x)
    assert onnx.shape == eager.shape
    assert (onnx - eager).abs().max().item() < 1e-3
    assert (onnx.argmax(1) == eager.argmax(1)).float().mean().item() > 0.999


@pytest.mark.slow
def test_the_inference_config_runs_the_onnx_model(tmp_path):
    """inference.yaml with onnx_path segments phantoms as the PyTorch network does."""
    import nibabel as nib

    from xlstm_monai.phantoms import write_hippocampus_phantoms

    _export("brain_hippocampus", tmp_path)
    write_hippocampus_phantoms(str(tmp_path / "task"), 3)
    common = {
        **TINY_UNET,
        "bundle_root": str(tmp_path),
        "dataset_dir": str(tmp_path / "task" / "imagesTr"),
        "num_workers": 0,
    }
    run_workflow("brain_hippocampus", ["inference.yaml"], "inference", output_dir=str(tmp_path / "torch"), **common)
    run_workflow(
        "brain_hippocampus",
        ["inference.yaml"],
        "inference",
        output_dir=str(tmp_path / "onnx"),
        onnx_path=str(tmp_path / "models" / "model.onnx"),
        **common,
    )
    for result in sorted((tmp_path / "torch").glob("*.nii.gz")):
        a = np.asarray(nib.load(result).dataobj)
        b = np.asarray(nib.load(tmp_path / "onnx" / result.name).dataobj)
        assert a.shape == b.shape and (a == b).mean() > 0.999
