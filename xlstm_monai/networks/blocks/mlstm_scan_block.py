# Copyright (c) xlstm-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import Enum

import torch
from monai.networks.layers import Conv, DropPath
from torch import nn
from torch.nn import functional as F
from xlstm.xlstm_large.components import soft_cap
from xlstm.xlstm_large.model import mLSTMBlock, xLSTMLargeConfig

from .mlstm_kernel import MLSTMKernel

__all__ = ["ScanDirection", "MLSTMScanBlock", "scan_order"]


class ScanDirection(Enum):
    """Direction in which a block traverses the flattened token grid."""

    FORWARD = "forward"
    REVERSE = "reverse"


def scan_order(block_index: int, spatial_dims: int) -> tuple[int, ScanDirection]:
    """
    (fast spatial axis, direction) of a block: directions alternate every block and the fast axis rotates every
    pair of blocks (last axis first), so a stack of ``2 * spatial_dims`` blocks has scanned every axis both ways.
    """
    direction = ScanDirection.FORWARD if block_index % 2 == 0 else ScanDirection.REVERSE
    fast_axis = spatial_dims - 1 - (block_index // 2) % spatial_dims
    return fast_axis, direction


def small_init_(param: torch.Tensor, dim: int) -> None:
    """Init for input projections (Nguyen & Salazar 2019), as in Vision-LSTM."""
    nn.init.normal_(param, mean=0.0, std=math.sqrt(2 / (5 * dim)))


def wang_init_(param: torch.Tensor, dim: int, num_blocks: int) -> None:
    """Init for projections back into the residual stream, scaled by depth (Wang 2021), as in Vision-LSTM."""
    nn.init.normal_(param, mean=0.0, std=2 / num_blocks / math.sqrt(dim))


def bias_linspace_init_(param: torch.Tensor, start: float = 3.0, end: float = 6.0) -> None:
    """Spread forget-gate biases over heads so heads start with different memory lengths."""
    with torch.no_grad():
        param.copy_(torch.linspace(start, end, param.numel(), dtype=param.dtype))


class MLSTMScanBlock(mLSTMBlock):
    """
    One mLSTM block of ``xlstm.xlstm_large`` (the pre-norm mLSTM layer + gated feed-forward block of xLSTM-7B)
    applied to a 3D token grid along one scan order, the way Vision-LSTM scans 2D patches. It is not Vision-LSTM's
    own ViL block, whose mLSTM layer differs (a causal convolution and learned skip inside the layer).

    The grid is flattened with ``fast_axis`` varying fastest, reversed for :attr:`ScanDirection.REVERSE`, and
    the class tokens are appended at the end of the scan so that, under the causal recurrence, they read the
    whole volume in every block. Residual branches get stochastic depth.

    Two options, off by default, change the block the way Vision-LSTM's and DINOv2's do:
    ``qk_conv_kernel_size`` computes queries and keys from a depthwise convolution of the normalised token grid
    (Vision-LSTM's convolution before q/k, here in 3D and without causality: each token's key sees its neighbours),
    values still from the tokens themselves; ``layer_scale_init`` multiplies each residual branch by a learned
    per-channel scale that starts at this value (LayerScale), so that the stack starts close to the identity.

    Args:
        embed_dim: token dimension.
        num_heads: number of mLSTM heads; ``embed_dim`` must be divisible by ``2 * num_heads``.
        fast_axis: spatial axis (0-based, of the grid) that varies fastest in the scan.
        direction: traversal direction.
        num_blocks: total blocks of the stack, for the depth-scaled init. Defaults to 12.
        dropout_path_rate: stochastic depth rate of this block. Defaults to 0.0.
        mlstm_kernel: kernel choice passed to :class:`MLSTMKernel`. Defaults to "auto".
        chunk_size: chunk length of the chunkwise kernel. Defaults to 64.
        kernel_dtype: kernel compute dtype under autocast. Defaults to "bfloat16".
        qk_conv_kernel_size: kernel size of the depthwise convolution before q/k, 0 for none. Defaults to 0.
        layer_scale_init: initial value of the residual branches' LayerScale, None for none. Defaults to None.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        fast_axis: int,
        direction: ScanDirection,
        num_blocks: int = 12,
        dropout_path_rate: float = 0.0,
        mlstm_kernel: str | Mapping[str, str] = "auto",
        chunk_size: int = 64,
        kernel_dtype: str = "bfloat16",
        qk_conv_kernel_size: int = 0,
        layer_scale_init: float | None = None,
        spatial_dims: int = 3,
    ) -> None:
        if qk_conv_kernel_size < 0 or (qk_conv_kernel_size and qk_conv_kernel_size % 2 == 0):
            raise ValueError(f"qk_conv_kernel_size should be 0 or odd, got {qk_conv_kernel_size}.")
        config = xLSTMLargeConfig(
            embedding_dim=embed_dim,
            num_heads=num_heads,
            num_blocks=num_blocks,
            vocab_size=1,  # required by the config, unused by a block
            mode="train",
            return_last_states=True,
            chunkwise_kernel="chunkwise--native_autograd",  # replaced below by the per-device kernel
            sequence_kernel="native_sequence__native",
            step_kernel="native",
            chunk_size=chunk_size,
            autocast_kernel_dtype="float32",
        )
        super().__init__(config)
        self.mlstm_layer.mlstm_backend = MLSTMKernel(mlstm_kernel, chunk_size=chunk_size, kernel_dtype=kernel_dtype)
        self.fast_axis = fast_axis
        self.direction = direction
        self.drop_path = DropPath(dropout_path_rate) if dropout_path_rate > 0 else nn.Identity()
        self.qk_conv = None
        if qk_conv_kernel_size:
            self.qk_conv = Conv[Conv.CONV, spatial_dims](
                embed_dim, embed_dim, qk_conv_kernel_size, padding=qk_conv_kernel_size // 2, groups=embed_dim
            )
        self.layer_scale_mlstm = self.layer_scale_ffn = None
        if layer_scale_init is not None:
            self.layer_scale_mlstm = nn.Parameter(torch.full((embed_dim,), float(layer_scale_init)))
            self.layer_scale_ffn = nn.Parameter(torch.full((embed_dim,), float(layer_scale_init)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        dim, num_blocks = self.config.embedding_dim, self.config.num_blocks
        layer, ffn = self.mlstm_layer, self.ffn
        for proj in (layer.q, layer.k, layer.v, layer.ogate_preact, ffn.proj_up, ffn.proj_up_gate):
            small_init_(proj.weight, dim)
        for proj in (layer.out_proj, ffn.proj_down):
            wang_init_(proj.weight, dim, num_blocks)
        nn.init.zeros_(layer.igate_preact.weight)
        nn.init.normal_(layer.igate_preact.bias, mean=0.0, std=0.1)
        nn.init.zeros_(layer.fgate_preact.weight)
        bias_linspace_init_(layer.fgate_preact.bias)

    def _to_sequence(self, grid: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """(B, *S, C) grid -> (B, N, C) sequence in this block's scan order, and the permutation used."""
        spatial_dims = grid.ndim - 2
        axes = [a for a in range(spatial_dims) if a != self.fast_axis] + [self.fast_axis]
        perm = [0] + [a + 1 for a in axes] + [spatial_dims + 1]
        seq = grid.permute(perm).flatten(1, -2)  # (B, N, C)
        if self.direction == ScanDirection.REVERSE:
            seq = seq.flip(1)
        return seq, perm

    def _to_grid(self, seq: torch.Tensor, like: torch.Tensor, perm: list[int]) -> torch.Tensor:
        if self.direction == ScanDirection.REVERSE:
            seq = seq.flip(1)
        permuted_shape = [like.shape[p] for p in perm]
        inverse = [perm.index(d) for d in range(len(perm))]
        return seq.reshape(permuted_shape).permute(inverse)  # (B, *S, C)

    def _mlstm_conv_qk(self, x: torch.Tensor, x_qk: torch.Tensor) -> torch.Tensor:
        """
        The mLSTM layer of ``xlstm_large`` (single weight mode) with queries and keys read from ``x_qk``
        instead of ``x``; (B, S, C) -> (B, S, C).
        """
        layer, num_heads = self.mlstm_layer, self.config.num_heads
        batch, length, _ = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, length, num_heads, -1).transpose(1, 2)  # (B, NH, S, DH)

        gate_cap = self.config.gate_soft_cap
        h, _ = layer.mlstm_backend(
            q=heads(layer.q(x_qk)),
            k=heads(layer.k(x_qk)),
            v=heads(layer.v(x)),
            i=soft_cap(layer.igate_preact(x), cap_value=gate_cap).transpose(1, 2),
            f=soft_cap(layer.fgate_preact(x), cap_value=gate_cap).transpose(1, 2),
        )  # (B, NH, S, DH)
        h = layer.multihead_norm(h.transpose(1, 2)).reshape(batch, length, -1)
        return layer.out_proj(layer.ogate_act_fn(layer.ogate_preact(x)) * h)

    def forward(self, grid: torch.Tensor, cls_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        """
        Args:
            grid: patch tokens, (B, *spatial, C).
            cls_tokens: class tokens, (B, T, C); T may be 0.
        Returns:
            the updated grid and class tokens, same shapes.
        """
        seq, perm = self._to_sequence(grid)  # (B, N, C)
        num_patches = seq.shape[1]
        x = torch.cat([seq, cls_tokens], dim=1)  # (B, N + T, C)
        x_norm = self.norm_mlstm(x)
        if self.qk_conv is None:
            h, _ = self.mlstm_layer(x_norm)
        else:
            normed_grid = self._to_grid(x_norm[:, :num_patches], grid, perm).movedim(-1, 1)  # (B, C, *spatial)
            conv_seq, _ = self._to_sequence(F.silu(self.qk_conv(normed_grid)).movedim(1, -1))  # (B, N, C)
            h = self._mlstm_conv_qk(x_norm, torch.cat([conv_seq, x_norm[:, num_patches:]], dim=1))
        if self.layer_scale_mlstm is not None:
            h = h * self.layer_scale_mlstm
        x = x + self.drop_path(h)
        f = self.ffn(self.norm_ffn(x))
        if self.layer_scale_ffn is not None:
            f = f * self.layer_scale_ffn
        x = x + self.drop_path(f)
        return self._to_grid(x[:, :num_patches], grid, perm), x[:, num_patches:]

    def extra_repr(self) -> str:
        return f"fast_axis={self.fast_axis}, direction={self.direction.value}"
