"""Student-teacher self-supervised pretraining of the XLSTMEncoder (the pretrain_ssl bundle)."""

from __future__ import annotations

from .export import export_teacher_encoder
from .heads import ProjectionHead, ReconstructionHead
from .losses import StudentTeacherLoss
from .model import StudentTeacher, patchify, random_token_mask
from .monitor import CollapseMonitor, TrainingCollapsedError
from .trainer import StudentTeacherTrainer, cosine_momentum, decay_param_groups, teacher_temperature
