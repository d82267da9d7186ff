"""An ONNX export of a bundle network, run by ONNX Runtime behind the ``nn.Module`` interface MONAI's inferers use."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

__all__ = ["OnnxNetwork"]


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
