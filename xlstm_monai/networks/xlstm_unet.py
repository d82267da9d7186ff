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
from collections.abc import Mapping, Sequence

import torch
from monai.networks.blocks import Convolution, UnetOutBlock, UnetrBasicBlock, UnetrPrUpBlock, UnetrUpBlock
from monai.networks.blocks.dynunet_block import get_conv_layer
from monai.utils import ensure_tuple_rep
from torch import nn

from .xlstm_encoder import XLSTMEncoder, XLSTMEncoderOutput

__all__ = ["FULL_RESOLUTION", "XLSTMUNet", "XLSTMUNetDecoder", "XlstmUNet", "full_resolution_output"]

# what the decoder runs at input resolution, where a voxel costs the most: "residual", UNETR's residual blocks (two
# 3^3 convolutions and a 1^3 each side of the skip, the skip concatenated); "single", one 3^3 convolution each side,
# the skip summed, about a quarter of the work there; "narrow", half the channels there, one 3^3 convolution on the
# image side and UNETR's residual up-block on the other (docs/results/README.md, "Where XLSTMUNet's time goes")
FULL_RESOLUTION = ("residual", "single", "narrow")


def full_resolution_output(pred: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """
    The full-resolution prediction of a network that may be deeply supervised: the first of the list that
    :class:`XLSTMUNet` (like MONAI's SegResNetDS) returns in training with ``deep_supervision``, or the prediction
    itself. The first transform of a training post-processing, so that metrics read one prediction whichever network
    trains; MONAI's ``DeepSupervisionLoss`` reads the whole list.
    """
    return pred[0] if isinstance(pred, (list, tuple)) else pred


def _conv_norm_act(spatial_dims: int, cin: int, cout: int, norm_name: tuple | str) -> Convolution:
    """One 3^3 convolution, norm and the activation of UNETR's blocks."""
    act = ("leakyrelu", {"negative_slope": 0.01, "inplace": True})
    return Convolution(spatial_dims, cin, cout, kernel_size=3, norm=norm_name, act=act)


class SummedUpBlock(nn.Module):
    """A transposed 2^3 convolution up to the skip's resolution, the skip added, and one 3^3 convolution."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, norm_name: tuple | str) -> None:
        super().__init__()
        self.transp_conv = get_conv_layer(
            spatial_dims, in_channels, out_channels, kernel_size=2, stride=2, conv_only=True, is_transposed=True
        )
        self.conv_block = _conv_norm_act(spatial_dims, out_channels, out_channels, norm_name)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv_block(self.transp_conv(x) + skip)


class XLSTMUNetDecoder(nn.Module):
    """
    The convolutional half of :class:`XLSTMUNet`: a light convolutional path from the input image, skip
    connections that sum it with upsampled token maps of the encoder, and UNETR's up-blocks from the bottleneck to
    ``out_channels`` at input resolution. A module of its own so that self-supervised pretraining can train it
    (masked restoration through the whole U-shape) and fine-tuning can load it key for key.

    Args:
        in_channels: image channels.
        out_channels: output channels (logits, or restored intensities in pretraining).
        embed_dim: token dimension of the encoder.
        patch_size: isotropic patch size of the encoder, a power of two >= 4.
        skip_sources: for each skip stage (fine to coarse), the index into the encoder's ``hidden_states``.
        feature_size: channels of the full-resolution stage, doubled at each coarser stage.
        norm_name: normalisation of the convolution blocks.
        res_block: residual convolution blocks.
        deep_supervision: how many coarser decoder stages also predict ``out_channels`` in training (0 for none,
            at most log2(patch_size) - 1); their logits come after the full-resolution ones, at their own
            resolution (1/2, 1/4, ...), for MONAI's ``DeepSupervisionLoss``.
        full_resolution: the blocks at input resolution, one of :data:`FULL_RESOLUTION`: "residual" (UNETR's),
            "single" (one convolution each side of a summed skip) or "narrow" (``feature_size // 2`` channels, one
            convolution on the image side, UNETR's up-block with the concatenated skip).
        spatial_dims: number of spatial dims.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        embed_dim: int,
        patch_size: int,
        skip_sources: Sequence[int],
        feature_size: int = 16,
        norm_name: tuple | str = "instance",
        res_block: bool = True,
        deep_supervision: int = 0,
        full_resolution: str = "residual",
        spatial_dims: int = 3,
    ) -> None:
        super().__init__()
        if full_resolution not in FULL_RESOLUTION:
            raise ValueError(f"full_resolution should be one of {FULL_RESOLUTION}, got {full_resolution!r}.")
        num_stages = int(round(math.log2(patch_size)))
        if not 0 <= deep_supervision < num_stages:
            raise ValueError(
                f"deep_supervision should be between 0 and {num_stages - 1} (decoder stages below full resolution "
                f"with {patch_size}^3 patches), got {deep_supervision}."
            )
        self.patch_size = ensure_tuple_rep(patch_size, spatial_dims)
        self.skip_sources = list(skip_sources)
        if full_resolution == "narrow" and feature_size < 2:
            raise ValueError(f'full_resolution "narrow" halves feature_size, which should be >= 2, got {feature_size}.')
        self.feature_size = feature_size
        channels = [feature_size * 2**s for s in range(num_stages + 1)]  # stage s at 1 / 2**s resolution
        if full_resolution == "narrow":
            channels[0] = feature_size // 2

        def conv_block(cin: int, cout: int, stride: int) -> UnetrBasicBlock:
            return UnetrBasicBlock(spatial_dims, cin, cout, 3, stride, norm_name=norm_name, res_block=res_block)

        single = full_resolution == "single"
        self.conv_path = nn.ModuleList(
            [
                _conv_norm_act(spatial_dims, in_channels, channels[0], norm_name)
                if full_resolution in ("single", "narrow")
                else conv_block(in_channels, channels[0], 1)
            ]
            + [conv_block(channels[s - 1], channels[s], 2) for s in range(1, num_stages)]
        )
        self.token_skips = nn.ModuleList(
            [
                UnetrPrUpBlock(
                    spatial_dims,
                    embed_dim,
                    channels[s],
                    num_layer=num_stages - s - 1,
                    kernel_size=3,
                    stride=1,
                    upsample_kernel_size=2,
                    norm_name=norm_name,
                    conv_block=True,
                    res_block=res_block,
                )
                for s in range(1, num_stages)
            ]
        )
        self.bottleneck = conv_block(embed_dim, channels[num_stages], 1)
        self.decoders = nn.ModuleList(
            [
                SummedUpBlock(spatial_dims, channels[1], channels[0], norm_name)
                if single and s == 0
                else UnetrUpBlock(
                    spatial_dims, channels[s + 1], channels[s], 3, 2, norm_name=norm_name, res_block=res_block
                )
                for s in range(num_stages)
            ]
        )
        self.out = UnetOutBlock(spatial_dims, channels[0], out_channels)
        # heads of the 1/2, 1/4, ... resolution stages: trained with the network, unused at inference
        self.deep_supervision_heads = nn.ModuleList(
            [UnetOutBlock(spatial_dims, channels[s], out_channels) for s in range(1, deep_supervision + 1)]
        )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """
        Drop the weights of deep supervision heads this decoder does not have: they only ever served training, so a
        model trained with ``deep_supervision`` loads into the inference network (which has none) as it is.
        """
        heads = prefix + "deep_supervision_heads."
        for key in [k for k in state_dict if k.startswith(heads)]:
            if int(key[len(heads) :].split(".")[0]) >= len(self.deep_supervision_heads):
                del state_dict[key]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x_in: torch.Tensor, encoded: XLSTMEncoderOutput) -> torch.Tensor | list[torch.Tensor]:
        """
        Args:
            x_in: the image, (B, in_channels, *spatial).
            encoded: the encoder's output for it (or for a masked copy of it).

        Returns:
            the logits at input resolution; in training with deep supervision, the list of those and the coarser
            stages' logits (finest first).
        """
        grid = [s // p for s, p in zip(x_in.shape[2:], self.patch_size)]
        bottom = encoded.tokens.transpose(1, 2).reshape(x_in.shape[0], -1, *grid)  # (B, C, *grid)
        skips = []
        feature = x_in
        for stage, conv in enumerate(self.conv_path):
            feature = conv(feature)  # (B, channels[stage], *spatial / 2**stage)
            if stage > 0:
                from_tokens = self.token_skips[stage - 1](encoded.hidden_states[self.skip_sources[stage - 1]])
                feature = feature + from_tokens
            skips.append(feature)
        out = self.bottleneck(bottom)  # (B, channels[-1], *grid)
        supervised = []
        for stage in reversed(range(len(self.decoders))):
            out = self.decoders[stage](out, skips[stage])  # (B, channels[stage], *spatial / 2**stage)
            if self.training and 0 < stage <= len(self.deep_supervision_heads):
                supervised.insert(0, self.deep_supervision_heads[stage - 1](out))
        return [self.out(out), *supervised] if supervised else self.out(out)


class XLSTMUNet(nn.Module):
    """
    Beck et al., "xLSTM: Extended Long Short-Term Memory", NeurIPS 2024, https://arxiv.org/abs/2405.04517.
    Alkin et al., "Vision-LSTM: xLSTM as Generic Vision Backbone", ICLR 2025, https://arxiv.org/abs/2406.04303.
    Hatamizadeh et al., "UNETR: Transformers for 3D Medical Image Segmentation", WACV 2022,
    https://arxiv.org/abs/2103.10504.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        img_size: Sequence[int] | int = 96,
        feature_size: int = 16,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        patch_size: int = 8,
        norm_name: tuple | str = "instance",
        res_block: bool = True,
        dropout_rate: float = 0.0,
        dropout_path_rate: float = 0.0,
        mlstm_kernel: str | Mapping[str, str] = "auto",
        kernel_dtype: str = "bfloat16",
        chunk_size: int = 64,
        use_checkpoint: bool = False,
        num_cls_tokens: int = 0,
        mask_token: bool = False,
        token_mixer: str = "mlstm",
        qk_conv_kernel_size: int = 3,
        layer_scale_init: float | None = None,
        deep_supervision: int = 0,
        full_resolution: str = "residual",
        spatial_dims: int = 3,
    ) -> None:
        """
        The network is an :class:`XLSTMEncoder` stored under ``encoder.`` and an :class:`XLSTMUNetDecoder` under
        ``decoder.``, so a ``pretrain_ssl`` export loads into it key for key: the encoder alone, or both halves
        when the pretraining restored masked volumes through the whole U-shape.

        Args:
            in_channels: dimension of input channels.
            out_channels: dimension of output channels (logits).
            img_size: reference input size of the encoder's position embedding; inputs of other sizes that the
                patch grid tiles are accepted. Defaults to 96.
            feature_size: channels of the full-resolution decoder stage, doubled at each coarser stage. Defaults to 16.
            embed_dim: token dimension of the encoder. Defaults to 384.
            depth: number of mLSTM blocks. Defaults to 12.
            num_heads: number of mLSTM heads. Defaults to 6.
            patch_size: isotropic patch size, a power of two >= 4; the decoder has log2(patch_size) stages.
                Defaults to 8.
            norm_name: feature normalization type and arguments of the decoder. Defaults to "instance".
            res_block: use residual convolution blocks in the decoder. Defaults to True.
            dropout_rate: dropout after the position embedding. Defaults to 0.0.
            dropout_path_rate: stochastic depth rate of the encoder. Defaults to 0.0.
            mlstm_kernel: mLSTM kernel choice, see :class:`XLSTMEncoder`. Defaults to "auto".
            kernel_dtype: compute dtype of the mLSTM kernel under autocast. Defaults to "bfloat16".
            chunk_size: chunk length of the chunkwise kernels. Defaults to 64.
            use_checkpoint: gradient checkpointing in the encoder. Defaults to False.
            num_cls_tokens: class tokens of the encoder; only self-supervised pretraining uses them. Defaults to 0.
            mask_token: a mask token in the encoder, for masked pretraining. Defaults to False.
            token_mixer: "mlstm", or "none" for the ablation without mLSTM blocks (see :class:`XLSTMEncoder`).
                Defaults to "mlstm".
            qk_conv_kernel_size: depthwise convolution before each block's q/k, 0 for none (see
                :class:`XLSTMEncoder`). Defaults to 3, the bundles' setting.
            layer_scale_init: initial LayerScale of the blocks' residual branches, None for none. Defaults to None.
            deep_supervision: coarser decoder stages that also predict in training, 0 for none (see
                :class:`XLSTMUNetDecoder`); in eval mode the network always returns one tensor. Defaults to 0.
            full_resolution: the decoder's blocks at input resolution: "residual" (UNETR's residual blocks) or
                "single" (one convolution each side of a summed skip: about a quarter of the work there, the
                largest share of the network's time on a CPU) or "narrow" (half the channels there, one convolution
                on the image side). Defaults to "residual".
            spatial_dims: number of spatial dims. Defaults to 3.

        Examples::

            # for single channel input 4-channel output with 96^3 training crops
            >>> net = XLSTMUNet(in_channels=1, out_channels=4, img_size=96)

            # for 4-channel input 3-channel output with 128^3 crops and 16^3 patches
            >>> net = XLSTMUNet(in_channels=4, out_channels=3, img_size=128, patch_size=16)

            # for a small, fast model on 64^3 crops
            >>> net = XLSTMUNet(1, 8, img_size=64, feature_size=8, embed_dim=96, depth=4, num_heads=2)
        """
        super().__init__()
        if isinstance(patch_size, Sequence):
            if len(set(patch_size)) != 1:
                raise ValueError(f"XLSTMUNet needs an isotropic patch_size, got {tuple(patch_size)}.")
            patch_size = patch_size[0]
        num_stages = int(round(math.log2(patch_size))) if patch_size > 0 else 0
        if num_stages < 2 or 2**num_stages != patch_size:
            raise ValueError(f"patch_size should be a power of two >= 4, got {patch_size}.")
        if feature_size < 1:
            raise ValueError(f"feature_size should be positive, got {feature_size}.")
        self.in_channels = in_channels
        self.patch_size = ensure_tuple_rep(patch_size, spatial_dims)
        # one token map per skip stage between full resolution and the bottleneck, shallow maps to fine stages
        skip_blocks = [max(math.ceil(depth * (s + 1) / num_stages) - 1, 0) for s in range(num_stages - 1)]
        out_indices = sorted(set(skip_blocks))
        self.encoder = XLSTMEncoder(
            in_channels=in_channels,
            img_size=img_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            num_cls_tokens=num_cls_tokens,
            mask_token=mask_token,
            out_indices=out_indices,
            dropout_rate=dropout_rate,
            dropout_path_rate=dropout_path_rate,
            mlstm_kernel=mlstm_kernel,
            kernel_dtype=kernel_dtype,
            chunk_size=chunk_size,
            use_checkpoint=use_checkpoint,
            token_mixer=token_mixer,
            qk_conv_kernel_size=qk_conv_kernel_size,
            layer_scale_init=layer_scale_init,
            spatial_dims=spatial_dims,
        )
        self.decoder = XLSTMUNetDecoder(
            in_channels=in_channels,
            out_channels=out_channels,
            embed_dim=embed_dim,
            patch_size=patch_size,
            skip_sources=[out_indices.index(b) for b in skip_blocks],
            feature_size=feature_size,
            norm_name=norm_name,
            res_block=res_block,
            deep_supervision=deep_supervision,
            full_resolution=full_resolution,
            spatial_dims=spatial_dims,
        )

    def forward(self, x_in: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self.decoder(x_in, self.encoder(x_in))


XlstmUNet = XLSTMUNet
