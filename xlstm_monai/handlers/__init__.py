"""Training and evaluation handlers that MONAI and ignite lack, attached by bundle configs."""

from __future__ import annotations

from .checkpoint import AtomicDiskSaver, CheckpointSaver, TrainingProgress, resume_checkpoint
from .classification import ClassProbabilityWriter, class_outputs, class_outputs_onehot
from .dicom_seg import DicomSegWriter
from .gradient_clipping import GradientClipping
from .hausdorff import HausdorffDistanceMM
from .input_screen import InputScreen, ScreenedDataset
from .metric_summary import PerStructureMetrics
from .model_file import StrictCheckpointLoader
from .non_finite import NonFiniteLossGuard, TrainingDivergedError
