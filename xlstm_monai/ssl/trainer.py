"""The ignite engine of ``pretrain_ssl``: one student-teacher step per iteration, with its schedules."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from monai.engines import SupervisedTrainer
from torch import nn

from .losses import StudentTeacherLoss
from .model import StudentTeacher, random_token_mask

__all__ = ["StudentTeacherTrainer", "cosine_momentum", "decay_param_groups", "teacher_temperature"]


def cosine_momentum(progress: float, start: float, end: float = 1.0) -> float:
    """EMA momentum rising from ``start`` to ``end`` on a half cosine as training progresses (0..1)."""
    return end - (end - start) * (math.cos(math.pi * min(max(progress, 0.0), 1.0)) + 1) / 2


def teacher_temperature(epoch: float, start: float, end: float, warmup_epochs: float) -> float:
    """Teacher temperature warmed up linearly from ``start`` to ``end`` over ``warmup_epochs``, then constant."""
    if warmup_epochs <= 0 or epoch >= warmup_epochs:
        return end
    return start + (end - start) * epoch / warmup_epochs


class StudentTeacherTrainer(SupervisedTrainer):
    """
    ``monai.engines.SupervisedTrainer`` whose iteration is a self-supervised student-teacher step: mask the
    global views' tokens, run :class:`StudentTeacher`, compute :class:`StudentTeacherLoss`, step the optimizer on
    the student, then move the teacher by EMA with a cosine momentum schedule. Handlers, AMP, ``epoch_length``
    and checkpointing work as for any MONAI trainer; ``engine.state.output`` is a dict of the loss terms and
    collapse statistics.

    Args:
        network: the :class:`StudentTeacher` (possibly DDP-wrapped).
        loss_function: the :class:`StudentTeacherLoss`.
        mask_ratio: share of the global views' patch tokens masked for the student. Defaults to 0.5.
        momentum: (start, end) of the teacher EMA momentum. Defaults to (0.996, 1.0).
        teacher_temp: (start, end) of the teacher temperature. Defaults to (0.04, 0.07).
        teacher_temp_warmup_epochs: epochs of the teacher temperature warm-up. Defaults to 10.
        clip_grad: max gradient norm of the student, 0 for none. Defaults to 3.0.
        global_key, local_key: batch keys of the stacked views ``(B, V, C, *spatial)``.
        other args: as ``SupervisedTrainer``.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Any,
        network: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_function: StudentTeacherLoss,
        mask_ratio: float = 0.5,
        momentum: Sequence[float] = (0.996, 1.0),
        teacher_temp: Sequence[float] = (0.04, 0.07),
        teacher_temp_warmup_epochs: float = 10,
        clip_grad: float = 3.0,
        global_key: str = "global_views",
        local_key: str = "local_views",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("decollate", False)
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function,
            **kwargs,
        )
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio should be in (0, 1), got {mask_ratio}.")
        self.mask_ratio = mask_ratio
        self.momentum = tuple(momentum)
        self.teacher_temp = tuple(teacher_temp)
        self.teacher_temp_warmup_epochs = teacher_temp_warmup_epochs
        self.clip_grad = clip_grad
        self.global_key, self.local_key = global_key, local_key

    @property
    def model(self) -> StudentTeacher:
        return getattr(self.network, "module", self.network)

    def _schedules(self) -> tuple[float, float]:
        epoch_length = self.state.epoch_length or 1
        done = (self.state.iteration - 1) / max(self.state.max_epochs * epoch_length, 1)
        epoch = (self.state.iteration - 1) / epoch_length
        momentum = cosine_momentum(done, *self.momentum)
        temp = teacher_temperature(epoch, *self.teacher_temp, self.teacher_temp_warmup_epochs)
        return momentum, temp

    def _iteration(self, engine: SupervisedTrainer, batchdata: dict[str, torch.Tensor]) -> dict[str, Any]:
        views = batchdata[self.global_key].to(engine.state.device)
        num_views = views.shape[1]
        global_views = views.transpose(0, 1).flatten(0, 1)  # (V*B, C, *global), view-major
        local_views = batchdata.get(self.local_key)
        if local_views is not None:
            local_views = local_views.to(global_views.device).transpose(0, 1).flatten(0, 1)  # (W*B, C, *local)
        grid = self.model.student["encoder"].grid_size(global_views.shape[2:])
        masks = random_token_mask(global_views.shape[0], int(math.prod(grid)), self.mask_ratio, global_views.device)
        momentum, temp = self._schedules()

        self.network.train()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(global_views.device.type, **(self.amp_kwargs or {}), enabled=self.amp):
            outputs = self.network(global_views, local_views, masks)
        losses = self.loss_function(outputs, global_views, num_views, temp)
        losses["loss"].backward()
        if self.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.model.student.parameters(), self.clip_grad)
        self.optimizer.step()
        self.model.update_teacher(momentum)
        result = {k: v.detach() for k, v in losses.items()}
        result.update({"momentum": momentum, "teacher_temp": temp})
        return result


def decay_param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters in two AdamW groups: weight decay on matrices, none on biases, norms and tokens."""
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or name.endswith(("pos_embed", "cls_token", "mask_token")):
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
