"""Projection and reconstruction heads of the student-teacher pretraining."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ProjectionHead", "ReconstructionHead"]


class ProjectionHead(nn.Module):
    """
    DINO projection head: an MLP to a bottleneck, L2 normalisation, then a linear layer with L2-normalised
    weights to ``out_dim`` prototypes (Caron et al., 2021). The normalised last layer keeps the logits bounded,
    which is what makes centring and sharpening of the teacher stable.

    Args:
        in_dim: token dimension of the encoder.
        out_dim: number of prototypes (softmax dimension).
        hidden_dim: width of the MLP. Defaults to 1024.
        bottleneck_dim: dimension before the prototypes. Defaults to 256.
        num_layers: MLP layers. Defaults to 3.
    """

    def __init__(
        self, in_dim: int, out_dim: int, hidden_dim: int = 1024, bottleneck_dim: int = 256, num_layers: int = 3
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers should be >= 1, got {num_layers}.")
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < num_layers - 1:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.prototypes = nn.Parameter(torch.empty(out_dim, bottleneck_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.prototypes, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1)  # (..., bottleneck)
        return F.linear(x, F.normalize(self.prototypes, dim=-1))  # (..., out_dim), cosine logits in [-1, 1]


class ReconstructionHead(nn.Module):
    """Light decoder: each patch token back to the voxels of its patch (SimMIM-style linear prediction)."""

    def __init__(self, in_dim: int, patch_voxels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, patch_voxels)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(tokens)  # (B, N, C * prod(patch_size))
