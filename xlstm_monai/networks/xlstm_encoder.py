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

import warnings
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from monai.networks.blocks.pos_embed_utils import build_sincos_position_embedding
from monai.networks.layers import Conv
from monai.utils import ensure_tuple_rep
from torch import nn

from .blocks import MLSTMScanBlock, scan_order

__all__ = ["PassThroughBlock", "XLSTMEncoder", "XLSTMEncoderOutput", "filter_xlstm_ssl"]


class XLSTMEncoderOutput(NamedTuple):
    """What :class:`XLSTMEncoder` returns."""

    cls_tokens: torch.Tensor  # (B, T, C), normalised; T = num_cls_tokens (may be 0)
    tokens: torch.Tensor  # (B, N, C), normalised final patch tokens, N = prod(grid), grid (H, W, D), D fastest
    hidden_states: list[torch.Tensor]  # [(B, C, *grid)] after the blocks named by out_indices


class PassThroughBlock(nn.Module):
    """A block that leaves the tokens as they are: the encoder of the ablation without mLSTM blocks."""

    def forward(self, grid: torch.Tensor, cls_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return grid, cls_tokens


class XLSTMEncoder(nn.Module):
    """
    Beck et al., "xLSTM: Extended Long Short-Term Memory", NeurIPS 2024, https://arxiv.org/abs/2405.04517.
    Alkin et al., "Vision-LSTM: xLSTM as Generic Vision Backbone", ICLR 2025, https://arxiv.org/abs/2406.04303.
    """

    def __init__(
        self,
        in_channels: int = 1,
        img_size: Sequence[int] | int = 96,
        patch_size: Sequence[int] | int = 8,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        num_cls_tokens: int = 1,
        mask_token: bool = False,
        out_indices: Sequence[int] | None = None,
        dropout_rate: float = 0.0,
        dropout_path_rate: float = 0.0,
        mlstm_kernel: str | Mapping[str, str] = "auto",
        kernel_dtype: str = "bfloat16",
        chunk_size: int = 64,
        use_checkpoint: bool = False,
        token_mixer: str = "mlstm",
        qk_conv_kernel_size: int = 3,
        layer_scale_init: float | None = None,
        spatial_dims: int = 3,
    ) -> None:
        """
        Args:
            in_channels: dimension of input channels. Defaults to 1.
            img_size: reference input size on which the learned position embedding is laid out; other sizes
                that the patch grid tiles get it trilinearly resized, so one checkpoint serves training crops and
                larger inference windows. Defaults to 96.
            patch_size: patch size per spatial dimension. Defaults to 8.
            embed_dim: token dimension. Defaults to 384.
            depth: number of mLSTM blocks. Defaults to 12.
            num_heads: number of mLSTM heads; ``embed_dim`` must be divisible by ``2 * num_heads``. Defaults to 6.
            num_cls_tokens: number of class tokens read out after every block (0 for none). Defaults to 1.
            mask_token: whether to learn a mask token substituted at masked positions (masked-image
                self-supervised learning). Defaults to False.
            out_indices: indices of the blocks whose outputs are returned as feature maps. Defaults to the
                last block of each quarter of the stack.
            dropout_rate: dropout after the position embedding. Defaults to 0.0.
            dropout_path_rate: stochastic depth rate, rising linearly to this value over the blocks. Defaults to 0.0.
            mlstm_kernel: "auto" (Triton chunkwise kernels on CUDA, pure-torch chunkwise kernel on CPU), a
                ``mlstm_kernels`` kernel name, or a mapping ``{"cuda": name, "cpu": name}``. Defaults to "auto".
            kernel_dtype: compute dtype of the mLSTM kernel under autocast. Defaults to "bfloat16".
            chunk_size: chunk length of the chunkwise kernels; sequences are padded to its multiple. Defaults to 64.
            use_checkpoint: use gradient checkpointing per block to save memory. Defaults to False.
            token_mixer: "mlstm", or "none" for the ablation that keeps everything but the mLSTM blocks (each
                block passes its tokens through unchanged), to measure what the blocks add. Defaults to "mlstm".
            qk_conv_kernel_size: kernel size of a depthwise convolution of the token grid from which each block
                reads its queries and keys, 0 for none (the plain mLSTM block of 0.1.0; see :class:`MLSTMScanBlock`).
                Defaults to 3, the bundles' setting.
            layer_scale_init: initial LayerScale of the blocks' residual branches, None for none. Defaults to None.
            spatial_dims: number of spatial dims. Defaults to 3.

        Examples::

            # for 1-channel 96^3 crops with 8^3 patches: 1,728 tokens
            >>> net = XLSTMEncoder(in_channels=1, img_size=96, patch_size=8)

            # for 4-channel input, two class tokens, masked-image pretraining
            >>> net = XLSTMEncoder(in_channels=4, num_cls_tokens=2, mask_token=True)

            # for a small, fast 64^3 model
            >>> net = XLSTMEncoder(in_channels=1, img_size=64, embed_dim=96, depth=4, num_heads=2)
        """
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims should be 2 or 3, got {spatial_dims}.")
        if not 0 <= dropout_rate <= 1 or not 0 <= dropout_path_rate <= 1:
            raise ValueError("dropout_rate and dropout_path_rate should be between 0 and 1.")
        if depth < 1:
            raise ValueError(f"depth should be at least 1, got {depth}.")
        if num_heads < 1 or embed_dim % (2 * num_heads):
            raise ValueError(f"embed_dim ({embed_dim}) should be divisible by 2 * num_heads ({2 * num_heads}).")
        if embed_dim % (2 * spatial_dims):
            raise ValueError(f"embed_dim ({embed_dim}) should be divisible by {2 * spatial_dims} (sin-cos init).")
        if token_mixer not in ("mlstm", "none"):
            raise ValueError(f"token_mixer should be 'mlstm' or 'none', got {token_mixer!r}.")
        if num_cls_tokens < 0:
            raise ValueError(f"num_cls_tokens should be >= 0, got {num_cls_tokens}.")
        self.in_channels = in_channels
        self.spatial_dims = spatial_dims
        self.embed_dim = embed_dim
        self.patch_size = ensure_tuple_rep(patch_size, spatial_dims)
        img_size = ensure_tuple_rep(img_size, spatial_dims)
        if any(p < 1 or s % p for s, p in zip(img_size, self.patch_size)):
            raise ValueError(f"img_size {img_size} should be a multiple of patch_size {self.patch_size}.")
        self.ref_grid = tuple(s // p for s, p in zip(img_size, self.patch_size))
        self.depth, self.num_heads, self.num_cls_tokens = depth, num_heads, num_cls_tokens
        self.qk_conv_kernel_size, self.layer_scale_init = qk_conv_kernel_size, layer_scale_init
        self.out_indices = self._resolve_out_indices(out_indices, depth)
        self.use_checkpoint = use_checkpoint

        self.patch_embed = Conv[Conv.CONV, spatial_dims](
            in_channels, embed_dim, kernel_size=self.patch_size, stride=self.patch_size
        )
        with warnings.catch_warnings():  # MONAI's builder calls torch.meshgrid without `indexing`
            warnings.filterwarnings("ignore", message="torch.meshgrid", category=UserWarning)
            sincos = build_sincos_position_embedding(self.ref_grid, embed_dim, spatial_dims)  # (1, N, C)
        self.pos_embed = nn.Parameter(sincos.data.transpose(1, 2).reshape(1, embed_dim, *self.ref_grid).clone())
        self.pos_drop = nn.Dropout(dropout_rate)
        self.cls_token = nn.Parameter(torch.zeros(1, num_cls_tokens, embed_dim)) if num_cls_tokens else None
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if mask_token else None
        drop_rates = torch.linspace(0, dropout_path_rate, depth).tolist()
        self.blocks = nn.ModuleList()
        for idx in range(depth):
            if token_mixer == "none":
                self.blocks.append(PassThroughBlock())
                continue
            fast_axis, direction = scan_order(idx, spatial_dims)
            self.blocks.append(
                MLSTMScanBlock(
                    embed_dim,
                    num_heads,
                    fast_axis=fast_axis,
                    direction=direction,
                    num_blocks=depth,
                    dropout_path_rate=drop_rates[idx],
                    mlstm_kernel=mlstm_kernel,
                    chunk_size=chunk_size,
                    kernel_dtype=kernel_dtype,
                    qk_conv_kernel_size=qk_conv_kernel_size,
                    layer_scale_init=layer_scale_init,
                    spatial_dims=spatial_dims,
                )
            )
        self.norm = nn.LayerNorm(embed_dim)
        self.reset_parameters()

    @staticmethod
    def _resolve_out_indices(out_indices: Sequence[int] | None, depth: int) -> tuple[int, ...]:
        if out_indices is None:
            return tuple(sorted({max(depth * q // 4 - 1, 0) for q in range(1, 5)}))
        indices = tuple(int(i) for i in out_indices)
        if any(not 0 <= i < depth for i in indices):
            raise ValueError(f"out_indices {indices} should be block indices in [0, {depth - 1}].")
        return indices

    def reset_parameters(self) -> None:
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        if self.mask_token is not None:
            nn.init.trunc_normal_(self.mask_token, std=0.02)

    def hyper_parameters(self) -> dict:
        """The architecture settings a checkpoint of this encoder needs a network to share (JSON-friendly)."""
        return {
            "in_channels": self.in_channels,
            "img_size": [g * p for g, p in zip(self.ref_grid, self.patch_size)],
            "patch_size": list(self.patch_size),
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "num_cls_tokens": self.num_cls_tokens,
            "mask_token": self.mask_token is not None,
            "qk_conv_kernel_size": self.qk_conv_kernel_size,
            "layer_scale": self.layer_scale_init is not None,
            "spatial_dims": self.spatial_dims,
        }

    def no_weight_decay(self) -> set[str]:
        """Parameters an optimizer should not decay."""
        return {"pos_embed", "cls_token", "mask_token"}

    def grid_size(self, spatial_shape: Sequence[int]) -> tuple[int, ...]:
        """Token grid for an input of ``spatial_shape``."""
        return tuple(int(s) // p for s, p in zip(spatial_shape, self.patch_size))

    def position_embedding(self, grid: Sequence[int]) -> torch.Tensor:
        """Position embedding (1, N, C) for a token grid, resized from the reference grid when it differs."""
        pos = self.pos_embed  # (1, C, *ref_grid)
        if tuple(grid) != self.ref_grid:
            mode = "trilinear" if self.spatial_dims == 3 else "bilinear"
            pos = F.interpolate(pos, size=tuple(grid), mode=mode, align_corners=False)
        return pos.flatten(2).transpose(1, 2)

    @torch.jit.unused
    def _check_input(self, x: torch.Tensor, mask: torch.Tensor | None) -> None:
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(
                f"expected a (B, C, {', '.join('HWD'[: self.spatial_dims])}) tensor, got shape {tuple(x.shape)}."
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected {self.in_channels} input channel(s), got {x.shape[1]} (shape {tuple(x.shape)})."
            )
        spatial = tuple(x.shape[2:])
        if any(s % p or s < p for s, p in zip(spatial, self.patch_size)):
            raise ValueError(
                f"input spatial size {spatial} is not a multiple of the patch size {self.patch_size}; "
                "pad or crop it (e.g. with monai.transforms.DivisiblePad)."
            )
        if mask is not None:
            if self.mask_token is None:
                raise ValueError("a token mask was given but the encoder was built with mask_token=False.")
            grid = self.grid_size(spatial)
            n = 1
            for g in grid:
                n *= g
            if mask.dtype != torch.bool or mask.shape not in ((x.shape[0], n), (x.shape[0], *grid)):
                raise ValueError(
                    f"mask should be a bool tensor of shape {(x.shape[0], n)} or {(x.shape[0], *grid)}, "
                    f"got {mask.dtype} {tuple(mask.shape)}."
                )

    def embed(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, list[int]]:
        """Patch tokens (B, N, C) with the mask token at masked positions and position embedding added; grid."""
        tokens = self.patch_embed(x)  # (B, C, *grid)
        grid = list(tokens.shape[2:])
        tokens = tokens.flatten(2).transpose(1, 2)  # (B, N, C)
        if mask is not None and self.mask_token is not None:
            mask = mask.reshape(mask.shape[0], -1, 1)  # (B, N, 1)
            tokens = torch.where(mask, self.mask_token.to(tokens.dtype), tokens)
        return self.pos_drop(tokens + self.position_embedding(grid)), grid

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> XLSTMEncoderOutput:
        """
        Args:
            x: input volume, (B, in_channels, *spatial), each spatial size a multiple of the patch size.
            mask: optional bool token mask, (B, N) or (B, *grid); True positions get the mask token.
        """
        if not torch.jit.is_scripting() and not torch.jit.is_tracing():
            self._check_input(x, mask)
        tokens, grid = self.embed(x, mask)  # (B, N, C)
        batch = tokens.shape[0]
        if self.cls_token is not None:
            cls_tokens = self.cls_token.expand(batch, -1, -1)  # (B, T, C)
        else:
            cls_tokens = tokens.new_zeros(batch, 0, self.embed_dim)  # (B, 0, C)
        grid_tokens = tokens.reshape(batch, *grid, self.embed_dim)  # (B, *grid, C)
        hidden_states = []
        for idx, block in enumerate(self.blocks):
            if self.use_checkpoint and self.training:
                grid_tokens, cls_tokens = torch.utils.checkpoint.checkpoint(
                    block, grid_tokens, cls_tokens, use_reentrant=False
                )
            else:
                grid_tokens, cls_tokens = block(grid_tokens, cls_tokens)
            if idx in self.out_indices:
                hidden_states.append(grid_tokens.movedim(-1, 1).contiguous())  # (B, C, *grid)
        tokens = self.norm(grid_tokens.reshape(batch, -1, self.embed_dim))  # (B, N, C)
        return XLSTMEncoderOutput(self.norm(cls_tokens), tokens, hidden_states)


_SSL_WRAPPER_PREFIXES = ("module.", "teacher.", "backbone.", "encoder.")


def filter_xlstm_ssl(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor] | None:
    """
    Map a key of a ``pretrain_ssl`` checkpoint (teacher/student wrappers, DDP ``module.``) to the
    :class:`XLSTMEncoder` key, or None for keys that are not encoder weights (projection heads, the
    reconstruction decoder, the DINO centre) or that belong to the student, whose weights the teacher supersedes.
    For use with ``monai.networks.utils.copy_model_state``.
    """
    if key.startswith(("student.", "module.student.")):
        return None
    stripped = True
    while stripped:
        stripped = False
        for prefix in _SSL_WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    head = key.split(".", 1)[0]
    if head in ("patch_embed", "pos_embed", "cls_token", "mask_token", "blocks", "norm"):
        return key, value
    return None
