"""
Sparse-convolution emulation for masked restoration through a U-Net's convolutional path (SparK, Tian et al., ICLR
2023; Wald et al., CVPR 2025): the convolutions compute only at visible voxels, so the masked blocks of the image
never shift the path's activations or its normalisation statistics, and each stage's masked positions are filled
with a learned mask token before they reach the decoder.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.instancenorm import _InstanceNorm

__all__ = ["StageMaskTokens", "sparse_convolutions"]


class StageMaskTokens(nn.Module):
    """One learned vector per stage of a convolutional path, written where that stage's input was masked."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        self.tokens = nn.ParameterList([nn.Parameter(torch.zeros(c)) for c in channels])
        for token in self.tokens:
            nn.init.trunc_normal_(token, std=0.02)


def _visible_at(visible: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The (B, 1, *spatial) visibility at ``like``'s resolution: a coarse voxel is visible when its block is."""
    if visible.shape[2:] == like.shape[2:]:
        return visible
    pool = {3: F.adaptive_max_pool1d, 4: F.adaptive_max_pool2d, 5: F.adaptive_max_pool3d}[visible.ndim]
    return pool(visible, like.shape[2:])


def _masked_instance_norm(norm: _InstanceNorm, x: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Instance normalisation over the visible voxels only, zero elsewhere."""
    dims = tuple(range(2, x.ndim))
    count = visible.sum(dims, keepdim=True).clamp_min(1.0)
    mean = (x * visible).sum(dims, keepdim=True) / count
    var = ((x - mean).square() * visible).sum(dims, keepdim=True) / count
    y = (x - mean) * torch.rsqrt(var + norm.eps)
    if norm.affine:
        shape = (1, -1) + (1,) * len(dims)
        y = y * norm.weight.view(shape) + norm.bias.view(shape)
    return y * visible


@contextmanager
def sparse_convolutions(
    stages: nn.ModuleList, visible: torch.Tensor, mask_tokens: StageMaskTokens | None = None
) -> Iterator[None]:
    """
    Within the context, every convolution of ``stages`` (a convolutional path, one module per resolution) has its
    output multiplied by the visibility, its instance norms use visible voxels only, and each stage's output has
    its masked positions set to that stage's mask token.

    Args:
        stages: the path's stage modules; their convolutions and norms are hooked for the context only.
        visible: (B, 1, *spatial) 1.0 at visible voxels, 0.0 at masked ones, at the path's input resolution; masked
            blocks should be aligned to the coarsest stage (blocks of the encoder's patch size are).
        mask_tokens: the stages' mask tokens, or None to leave masked positions at zero.
    """
    visible = visible.float()
    if mask_tokens is not None and len(mask_tokens.tokens) != len(stages):
        raise ValueError(f"{len(mask_tokens.tokens)} mask tokens for {len(stages)} stages.")

    def mask_output(module, inputs, output):
        return output * _visible_at(visible, output).to(output.dtype)

    def masked_norm(module, inputs, output):
        return _masked_instance_norm(module, inputs[0], _visible_at(visible, inputs[0]).to(inputs[0].dtype))

    def fill_stage(index: int):
        def hook(module, inputs, output):
            seen = _visible_at(visible, output).to(output.dtype)
            token = mask_tokens.tokens[index].to(output.dtype).view(1, -1, *(1,) * (output.ndim - 2))
            return output * seen + token * (1.0 - seen)

        return hook

    handles = []
    try:
        for module in stages.modules():
            if isinstance(module, _ConvNd):
                handles.append(module.register_forward_hook(mask_output))
            elif isinstance(module, _InstanceNorm):
                handles.append(module.register_forward_hook(masked_norm))
            elif isinstance(module, nn.modules.batchnorm._NormBase | nn.GroupNorm | nn.LayerNorm):
                raise ValueError(f"sparse convolutions support instance norms only, found {type(module).__name__}.")
        if mask_tokens is not None:
            handles += [stage.register_forward_hook(fill_stage(i)) for i, stage in enumerate(stages)]
        yield
    finally:
        for handle in handles:
            handle.remove()
