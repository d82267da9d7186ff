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

from collections.abc import Mapping, Sequence

import torch
from monai.utils import look_up_option
from torch import nn

from .xlstm_encoder import XLSTMEncoder

__all__ = ["XLSTMClassifier", "XlstmClassifier", "POOLING_MODES"]

POOLING_MODES = ("cls", "avg", "cls_avg")


class XLSTMClassifier(nn.Module):
    """
    Beck et al., "xLSTM: Extended Long Short-Term Memory", NeurIPS 2024, https://arxiv.org/abs/2405.04517.
    Alkin et al., "Vision-LSTM: xLSTM as Generic Vision Backbone", ICLR 2025, https://arxiv.org/abs/2406.04303.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        img_size: Sequence[int] | int = 96,
        patch_size: Sequence[int] | int = 8,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        num_cls_tokens: int = 1,
        pooling: str = "cls_avg",
        dropout_rate: float = 0.0,
        dropout_path_rate: float = 0.0,
        mlstm_kernel: str | Mapping[str, str] = "auto",
        kernel_dtype: str = "bfloat16",
        chunk_size: int = 64,
        use_checkpoint: bool = False,
        qk_conv_kernel_size: int = 3,
        layer_scale_init: float | None = None,
        spatial_dims: int = 3,
    ) -> None:
        """
        The encoder is an :class:`XLSTMEncoder` stored under ``encoder.``, so a pretrained encoder checkpoint
        loads into it key for key; a linear head reads the class token(s), the average patch token, or both.

        Args:
            in_channels: dimension of input channels.
            out_channels: number of classes (logits).
            img_size: reference input size of the encoder's position embedding. Defaults to 96.
            patch_size: patch size per spatial dimension. Defaults to 8.
            embed_dim: token dimension. Defaults to 384.
            depth: number of mLSTM blocks. Defaults to 12.
            num_heads: number of mLSTM heads. Defaults to 6.
            num_cls_tokens: number of class tokens; "cls" pooling needs at least one. Defaults to 1.
            pooling: "cls" (mean of the class tokens), "avg" (mean of the patch tokens) or "cls_avg" (both,
                concatenated). Defaults to "cls_avg".
            dropout_rate: dropout after the position embedding and before the head. Defaults to 0.0.
            dropout_path_rate: stochastic depth rate of the encoder. Defaults to 0.0.
            mlstm_kernel: mLSTM kernel choice, see :class:`XLSTMEncoder`. Defaults to "auto".
            kernel_dtype: compute dtype of the mLSTM kernel under autocast. Defaults to "bfloat16".
            chunk_size: chunk length of the chunkwise kernels. Defaults to 64.
            use_checkpoint: gradient checkpointing in the encoder. Defaults to False.
            qk_conv_kernel_size: depthwise convolution before each block's q/k, 0 for none (see
                :class:`XLSTMEncoder`). Defaults to 3, the bundles' setting.
            layer_scale_init: initial LayerScale of the blocks' residual branches, None for none. Defaults to None.
            spatial_dims: number of spatial dims. Defaults to 3.

        Examples::

            # for a 1-channel 96^3 brain MRI and two classes
            >>> net = XLSTMClassifier(in_channels=1, out_channels=2, img_size=96)

            # for average-token pooling and no class token
            >>> net = XLSTMClassifier(1, 3, num_cls_tokens=0, pooling="avg")
        """
        super().__init__()
        self.pooling = look_up_option(pooling, POOLING_MODES)
        if self.pooling != "avg" and num_cls_tokens < 1:
            raise ValueError(f"pooling {pooling!r} needs num_cls_tokens >= 1, got {num_cls_tokens}.")
        if out_channels < 1:
            raise ValueError(f"out_channels should be positive, got {out_channels}.")
        self.encoder = XLSTMEncoder(
            in_channels=in_channels,
            img_size=img_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            num_cls_tokens=num_cls_tokens if self.pooling != "avg" else 0,
            mask_token=False,
            out_indices=(),
            dropout_rate=dropout_rate,
            dropout_path_rate=dropout_path_rate,
            mlstm_kernel=mlstm_kernel,
            kernel_dtype=kernel_dtype,
            chunk_size=chunk_size,
            use_checkpoint=use_checkpoint,
            qk_conv_kernel_size=qk_conv_kernel_size,
            layer_scale_init=layer_scale_init,
            spatial_dims=spatial_dims,
        )
        head_in = embed_dim * (2 if self.pooling == "cls_avg" else 1)
        # batch norm before the linear layer, as in linear probing of self-supervised encoders: subjects differ
        # by a small part of their pooled embedding, which normalising across the batch brings forward
        self.head = nn.Sequential(nn.BatchNorm1d(head_in), nn.Dropout(dropout_rate), nn.Linear(head_in, out_channels))
        nn.init.trunc_normal_(self.head[-1].weight, std=0.02)
        nn.init.zeros_(self.head[-1].bias)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Volume embedding (B, C) or (B, 2C) that the head reads."""
        encoded = self.encoder(x)
        if self.pooling == "cls":
            return encoded.cls_tokens.mean(dim=1)
        if self.pooling == "avg":
            return encoded.tokens.mean(dim=1)
        return torch.cat([encoded.cls_tokens.mean(dim=1), encoded.tokens.mean(dim=1)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(x))  # (B, out_channels)


XlstmClassifier = XLSTMClassifier
