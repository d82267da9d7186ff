"""Student and teacher XLSTMEncoders with their heads; the teacher follows the student by EMA only."""

from __future__ import annotations

import copy

import torch
from torch import nn

from xlstm_monai.networks import XLSTMEncoder, XLSTMUNet

from .heads import ProjectionHead, ReconstructionHead
from .sparse import StageMaskTokens, sparse_convolutions

__all__ = ["StudentTeacher", "patchify", "random_token_mask", "token_mask_to_voxels"]

_TEACHER_PARTS = ("encoder", "head", "patch_head")


def patchify(x: torch.Tensor, patch_size: tuple[int, ...]) -> torch.Tensor:
    """(B, C, *spatial) -> (B, N, C * prod(patch)), patches in the encoder's token order."""
    b, c, *spatial = x.shape
    grid = [s // p for s, p in zip(spatial, patch_size)]
    shape = [b, c]
    for g, p in zip(grid, patch_size):
        shape += [g, p]
    x = x.reshape(shape)  # (B, C, g0, p0, g1, p1, g2, p2)
    dims = len(spatial)
    order = [0] + [2 + 2 * i for i in range(dims)] + [1] + [3 + 2 * i for i in range(dims)]
    return x.permute(order).reshape(b, -1, c * int(torch.tensor(patch_size).prod()))


def token_mask_to_voxels(masks: torch.Tensor, grid: tuple[int, ...], patch_size: tuple[int, ...]) -> torch.Tensor:
    """(B, N) token mask -> (B, 1, *spatial) voxel mask: every voxel of a masked patch is True."""
    voxels = masks.reshape(masks.shape[0], 1, *grid)
    for axis, p in enumerate(patch_size):
        voxels = voxels.repeat_interleave(p, dim=2 + axis)
    return voxels


def random_token_mask(batch: int, num_tokens: int, ratio: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, N) bool mask with exactly round(ratio * N) True positions per sample (at least one, at most N - 1)."""
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"mask ratio should be in (0, 1), got {ratio}.")
    count = min(max(int(round(ratio * num_tokens)), 1), num_tokens - 1)
    ranks = torch.rand(batch, num_tokens, device=device).argsort(dim=1).argsort(dim=1)
    return ranks < count


class StudentTeacher(nn.Module):
    """
    Student-teacher model of ``pretrain_ssl``, after DINO (Caron et al., 2021) and iBOT (Zhou et al., 2022) and
    the VolTA-3D recipe for volumes: the student encoder (with a mask token) feeds a class-token head, a
    patch-token head and a reconstruction decoder; the teacher is a copy of the encoder and both heads that
    is never trained by gradients, only moved towards the student by :meth:`update_teacher`.

    The reconstruction decoder is either a light linear head on the masked tokens (given an
    :class:`XLSTMEncoder`) or, given an :class:`XLSTMUNet`, the U-Net's whole convolutional decoder: the masked
    patches are then blanked in the image as well (the decoder's convolutional path must not see them) and
    restored through the U-shape, so fine-tuning starts with a pretrained decoder as well as a pretrained encoder.
    With ``sparse_restoration``, the decoder's convolutional path computes at visible voxels only (sparse-convolution
    emulation, :func:`sparse_convolutions`) and its masked positions get a learned mask token per stage, as the
    encoder's masked tokens do; the tokens serve pretraining only and are not exported.

    Args:
        encoder: the student :class:`XLSTMEncoder`, or an :class:`XLSTMUNet` with as many output channels as
            input channels; it needs a class token and a mask token.
        out_dim: prototypes of the class-token head. Defaults to 4096.
        patch_out_dim: prototypes of the patch-token head. Defaults to 4096.
        hidden_dim: MLP width of the heads. Defaults to 1024.
        bottleneck_dim: bottleneck of the heads. Defaults to 256.
        sparse_restoration: sparse convolutions and stage mask tokens in the U-Net's convolutional path (a U-Net
            only). Defaults to False, the dense path on the blanked image.
    """

    def __init__(
        self,
        encoder: XLSTMEncoder | XLSTMUNet,
        out_dim: int = 4096,
        patch_out_dim: int = 4096,
        hidden_dim: int = 1024,
        bottleneck_dim: int = 256,
        sparse_restoration: bool = False,
    ) -> None:
        super().__init__()
        decoder: nn.Module | None = None
        if sparse_restoration and not isinstance(encoder, XLSTMUNet):
            raise ValueError("sparse_restoration needs an XLSTMUNet: an encoder alone has no convolutional path.")
        if isinstance(encoder, XLSTMUNet):
            decoder = encoder.decoder
            if decoder.out.conv.conv.out_channels != encoder.in_channels:
                raise ValueError("a U-Net restores the image: out_channels should equal in_channels.")
            encoder = encoder.encoder
        if encoder.cls_token is None or encoder.mask_token is None:
            raise ValueError("the SSL encoder needs num_cls_tokens >= 1 and mask_token=True.")
        self.restores_voxels = decoder is not None
        dim = encoder.embed_dim
        if decoder is None:
            decoder = ReconstructionHead(dim, encoder.in_channels * int(torch.tensor(encoder.patch_size).prod()))
        self.student = nn.ModuleDict(
            {
                "encoder": encoder,
                "head": ProjectionHead(dim, out_dim, hidden_dim, bottleneck_dim),
                "patch_head": ProjectionHead(dim, patch_out_dim, hidden_dim, bottleneck_dim),
                "decoder": decoder,
            }
        )
        if sparse_restoration:
            channels = [
                [m for m in stage.modules() if isinstance(m, nn.Conv3d | nn.Conv2d)][-1].out_channels
                for stage in decoder.conv_path
            ]
            self.student["stage_mask_tokens"] = StageMaskTokens(channels)
        self.teacher = nn.ModuleDict({name: copy.deepcopy(self.student[name]) for name in _TEACHER_PARTS})
        for param in self.teacher.parameters():
            param.requires_grad_(False)

    def train(self, mode: bool = True) -> StudentTeacher:
        """The teacher always runs in eval mode: no stochastic depth or dropout in its targets."""
        super().train(mode)
        self.teacher.eval()
        return self

    @property
    def patch_size(self) -> tuple[int, ...]:
        return self.student["encoder"].patch_size

    def forward(
        self, global_views: torch.Tensor, local_views: torch.Tensor | None, masks: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """
        Args:
            global_views: (V * B, C, *global) global crops, view-major.
            local_views: (W * B, C, *local) local crops, view-major, or None.
            masks: (V * B, N) bool token masks of the global crops for the student.
        Returns:
            teacher_cls (V*B, K), student_cls ((V+W)*B, K), teacher_patch and student_patch (M, Kp) at the M
            masked positions, reconstruction (M, C*prod(patch)), teacher_embedding (V*B, D), and the masks and
            patch size the reconstruction target needs.
        """
        with torch.no_grad():
            teacher = self.teacher["encoder"](global_views)
            teacher_embedding = teacher.cls_tokens[:, 0]  # (V*B, D)
            teacher_cls = self.teacher["head"](teacher_embedding)  # (V*B, K)
            teacher_patch = self.teacher["patch_head"](teacher.tokens[masks])  # (M, Kp)
        student_input = global_views
        if self.restores_voxels:  # the decoder's convolutional path reads the image: blank the masked patches
            grid = self.student["encoder"].grid_size(global_views.shape[2:])
            student_input = global_views.masked_fill(token_mask_to_voxels(masks, grid, self.patch_size), 0.0)
        student = self.student["encoder"](student_input, mask=masks)
        student_cls = [student.cls_tokens[:, 0]]
        if local_views is not None and local_views.numel():
            student_cls.append(self.student["encoder"](local_views).cls_tokens[:, 0])
        masked_tokens = student.tokens[masks]  # (M, D)
        if self.restores_voxels:
            restored = self._restore(student_input, student, masks)  # (V*B, C, *global)
            reconstruction = patchify(restored, self.patch_size)[masks]
        else:
            reconstruction = self.student["decoder"](masked_tokens)
        return {
            "teacher_cls": teacher_cls,
            "student_cls": self.student["head"](torch.cat(student_cls)),  # ((V+W)*B, K)
            "teacher_patch": teacher_patch,
            "student_patch": self.student["patch_head"](masked_tokens),  # (M, Kp)
            "reconstruction": reconstruction,  # (M, C*prod(patch))
            "teacher_embedding": teacher_embedding,
            "masks": masks,
            "patch_size": self.patch_size,
        }

    def _restore(self, image: torch.Tensor, encoded, masks: torch.Tensor) -> torch.Tensor:
        """The U-Net decoder on the blanked image, its convolutional path sparse when ``sparse_restoration``."""
        decoder = self.student["decoder"]
        if "stage_mask_tokens" not in self.student:
            return decoder(image, encoded)
        grid = self.student["encoder"].grid_size(image.shape[2:])
        visible = ~token_mask_to_voxels(masks, grid, self.patch_size)
        with sparse_convolutions(decoder.conv_path, visible, self.student["stage_mask_tokens"]):
            return decoder(image, encoded)

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """teacher <- momentum * teacher + (1 - momentum) * student, for the encoder and both heads."""
        for name in _TEACHER_PARTS:
            for student, teacher in zip(self.student[name].parameters(), self.teacher[name].parameters()):
                teacher.mul_(momentum).add_(student.detach(), alpha=1.0 - momentum)
