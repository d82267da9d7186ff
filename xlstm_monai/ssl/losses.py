"""The three pretraining losses, the teacher centres, and the statistics that reveal a collapse."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .model import patchify

__all__ = ["StudentTeacherLoss"]


def _all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over ranks, so the centre is the same on every process of a distributed run."""
    if dist.is_available() and dist.is_initialized():
        x = x.clone()
        dist.all_reduce(x)
        x /= dist.get_world_size()
    return x


def _cross_entropy(teacher_probs: torch.Tensor, student_logits: torch.Tensor, student_temp: float) -> torch.Tensor:
    return torch.sum(-teacher_probs * F.log_softmax(student_logits / student_temp, dim=-1), dim=-1)


class StudentTeacherLoss(nn.Module):
    """
    Weighted sum of three losses, each switchable off (weight 0) for ablations:

    1. global alignment (DINO): the student's class-token distribution of every view (global and local) matches
       the teacher's of every other global view;
    2. local alignment (iBOT): at the masked positions of a global view, the student's patch-token distribution
       matches the teacher's on the unmasked view;
    3. masked reconstruction: the decoder predicts the per-patch normalised intensities of the masked patches.

    Teacher outputs are centred (an EMA of their mean, all-reduced across ranks) and sharpened by a temperature
    given per step, so the schedule lives in the trainer. The returned statistics (teacher entropy, KL of the
    mean teacher distribution to uniform: of the class-token teacher, or of the patch-token teacher when global
    alignment is off; spread of the teacher's class embeddings) are what :class:`CollapseMonitor` watches.

    Args:
        out_dim: prototypes of the class-token head.
        patch_out_dim: prototypes of the patch-token head.
        global_weight, local_weight, recon_weight: loss weights. Default 1.0 each.
        student_temp: student temperature. Defaults to 0.1.
        center_momentum: EMA momentum of the centres. Defaults to 0.9.
    """

    def __init__(
        self,
        out_dim: int,
        patch_out_dim: int,
        global_weight: float = 1.0,
        local_weight: float = 1.0,
        recon_weight: float = 1.0,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
    ) -> None:
        super().__init__()
        if min(global_weight, local_weight, recon_weight) < 0 or not any((global_weight, local_weight, recon_weight)):
            raise ValueError("loss weights should be >= 0 and not all 0.")
        self.out_dim = out_dim
        self.weights = {"global": float(global_weight), "local": float(local_weight), "recon": float(recon_weight)}
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.register_buffer("patch_center", torch.zeros(1, patch_out_dim))

    def forward(
        self, outputs: dict[str, torch.Tensor], global_views: torch.Tensor, num_views: int, teacher_temp: float
    ) -> dict[str, torch.Tensor]:
        """
        Args:
            outputs: :class:`StudentTeacher` outputs.
            global_views: (V * B, C, *global) the unmasked global crops (reconstruction targets).
            num_views: V, the number of global views.
            teacher_temp: teacher temperature for this step.
        Returns:
            "loss" (for backward) and, detached, "loss_global", "loss_local", "loss_recon", "teacher_entropy",
            "kl_to_uniform", "embedding_spread".
        """
        teacher_cls = outputs["teacher_cls"].float()
        teacher_probs = F.softmax((teacher_cls - self.center) / teacher_temp, dim=-1)  # (V*B, K)
        zero = teacher_cls.new_zeros(())
        terms = {"global": zero, "local": zero, "recon": zero}
        if self.weights["global"]:
            terms["global"] = self._global_alignment(teacher_probs, outputs["student_cls"].float(), num_views)
        if self.weights["local"]:
            teacher_patch = F.softmax((outputs["teacher_patch"].float() - self.patch_center) / teacher_temp, dim=-1)
            terms["local"] = _cross_entropy(teacher_patch, outputs["student_patch"].float(), self.student_temp).mean()
        if self.weights["recon"]:
            terms["recon"] = self._reconstruction(outputs, global_views)
        loss = sum(self.weights[k] * v for k, v in terms.items())
        watched = teacher_probs  # the collapse statistics follow the alignment that trains: class tokens, else patches
        if not self.weights["global"] and self.weights["local"] and outputs["teacher_patch"].numel():
            watched = F.softmax((outputs["teacher_patch"].float() - self.patch_center) / teacher_temp, dim=-1)
        stats = self._collapse_statistics(watched, outputs["teacher_embedding"].float())
        self._update_centers(teacher_cls, outputs["teacher_patch"].float())
        return {"loss": loss, **{f"loss_{k}": v.detach() for k, v in terms.items()}, **stats}

    def _global_alignment(self, teacher_probs: torch.Tensor, student_logits: torch.Tensor, num_views: int):
        teacher_chunks = teacher_probs.chunk(num_views)
        student_chunks = student_logits.chunk(student_logits.shape[0] // teacher_chunks[0].shape[0])
        total, pairs = teacher_probs.new_zeros(()), 0
        for t, teacher in enumerate(teacher_chunks):
            for s, student in enumerate(student_chunks):
                if s == t:  # the same view: nothing to align
                    continue
                total = total + _cross_entropy(teacher, student, self.student_temp).mean()
                pairs += 1
        return total / max(pairs, 1)

    def _reconstruction(self, outputs: dict[str, torch.Tensor], global_views: torch.Tensor) -> torch.Tensor:
        masks = outputs["masks"]
        target = patchify(global_views.float(), outputs["patch_size"])[masks]  # (M, C*prod(patch))
        mean, std = target.mean(dim=-1, keepdim=True), target.std(dim=-1, keepdim=True)
        target = (target - mean) / (std + 1e-6)  # per-patch normalised intensities
        return F.mse_loss(outputs["reconstruction"].float(), target)

    @torch.no_grad()
    def _collapse_statistics(self, teacher_probs: torch.Tensor, embedding: torch.Tensor) -> dict[str, torch.Tensor]:
        entropy = -(teacher_probs * teacher_probs.clamp_min(1e-12).log()).sum(-1).mean()
        mean_probs = teacher_probs.mean(0)
        kl_uniform = (mean_probs * (mean_probs.clamp_min(1e-12) * teacher_probs.shape[-1]).log()).sum()
        spread = F.normalize(embedding, dim=-1).std(dim=0).mean() if embedding.shape[0] > 1 else embedding.new_ones(())
        return {
            "teacher_entropy": entropy / math.log(teacher_probs.shape[-1]),  # 1.0 = uniform outputs
            "kl_to_uniform": kl_uniform,
            "embedding_spread": spread,  # 0.0 = every volume gets the same class embedding
        }

    @torch.no_grad()
    def _update_centers(self, teacher_cls: torch.Tensor, teacher_patch: torch.Tensor) -> None:
        m = self.center_momentum
        self.center.mul_(m).add_(_all_reduce_mean(teacher_cls.mean(0, keepdim=True)), alpha=1 - m)
        if teacher_patch.numel():
            self.patch_center.mul_(m).add_(_all_reduce_mean(teacher_patch.mean(0, keepdim=True)), alpha=1 - m)
