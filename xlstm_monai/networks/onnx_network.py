"""An ONNX export of a bundle network, run by ONNX Runtime behind the ``nn.Module`` interface MONAI's inferers use."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import torch
from torch import nn

__all__ = ["OnnxNetwork", "export_bundle_onnx"]


class OnnxNetwork(nn.Module):
    """
    Runs ``python -m monai.bundle onnx_export``'s file with ONNX Runtime (CPU), one window at a time: the export
    has a fixed input shape, the sliding-window ROI with batch 1, and a sliding-window inferer only ever feeds it
    windows of that shape (``sw_batch_size`` of them at once, which are split here).

    Args:
        path: the ``.onnx`` file.
        providers: ONNX Runtime execution providers. Defaults to the CPU.
        threads: intra-op threads of the session; default ONNX Runtime's choice.
    """

    def __init__(self, path: str | os.PathLike, providers: list[str] | None = None, threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        if not os.path.isfile(path):
            raise FileNotFoundError(f"ONNX model not found: {path} (export it with python -m monai.bundle onnx_export)")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.input_shape = tuple(self.session.get_inputs()[0].shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != tuple(self.input_shape[1:]):
            raise ValueError(f"the ONNX model takes windows of {tuple(self.input_shape[1:])}, got {tuple(x.shape[1:])}")
        windows = np.ascontiguousarray(x.detach().cpu().float().numpy())
        outputs = [self.session.run(None, {self.input_name: windows[i : i + 1]})[0] for i in range(len(windows))]
        return torch.from_numpy(np.concatenate(outputs)).to(x.device)


def export_bundle_onnx(
    bundle_dir: str | os.PathLike,
    ckpt_file: str | os.PathLike,
    filepath: str | os.PathLike,
    input_shape: list[int],
    overrides: dict | None = None,
) -> None:
    """
    The model zoo's ``python -m monai.bundle onnx_export network_def`` of a bundle's inference.yaml, as a user runs
    it (``overrides``: config values given on its command line). Raises with the tail of its log when it fails.
    """
    command = [sys.executable, "-m", "monai.bundle", "onnx_export", "network_def"]
    command += ["--filepath", str(filepath), "--ckpt_file", str(ckpt_file), "--meta_file", "configs/metadata.json"]
    command += ["--config_file", "configs/inference.yaml", "--input_shape", str(list(input_shape))]
    for key, value in (overrides or {}).items():
        command += [f"--{key}", str(value)]
    done = subprocess.run(command, cwd=bundle_dir, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"onnx_export of {bundle_dir} failed:\n{done.stderr[-3000:]}")
