"""Export of what pretraining learned (the teacher encoder, and the U-Net decoder when there is one): the file every
fine-tuning bundle's ``pretrained_checkpoint`` reads."""

from __future__ import annotations

import json
import logging
import os
import tempfile

import torch

from .model import StudentTeacher

__all__ = ["export_teacher_encoder"]

logger = logging.getLogger(__name__)


def _atomic_save(obj, path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    os.close(handle)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates owner-only files; an export is meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def export_teacher_encoder(model: StudentTeacher, checkpoint: str, output: str) -> str:
    """
    Load a ``pretrain_ssl`` checkpoint (``last.pt`` with a "model" entry, or a bare state dict) into ``model``,
    and write what fine-tuning starts from to ``output`` (``{"state_dict", "hyper_parameters"}``), plus the
    hyper-parameters as JSON beside it (``pretrained.json``):

    * the teacher encoder under ``encoder.``: the EMA of the student, the better encoder in DINO-style training;
    * when the pretraining restored voxels through a U-Net decoder, the student's decoder under ``decoder.``
      (the teacher has none), so an :class:`XLSTMUNet` of the same settings loads both halves key for key.

    Returns ``output``.
    """
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"pretraining checkpoint not found: {checkpoint} (train first)")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = getattr(model, "module", model)
    model.load_state_dict(state.get("model", state))
    encoder = model.teacher["encoder"]
    hyper_parameters = encoder.hyper_parameters()
    weights = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    if model.restores_voxels:
        decoder = model.student["decoder"]
        weights.update({f"decoder.{k}": v for k, v in decoder.state_dict().items()})
        hyper_parameters["decoder"] = {"feature_size": decoder.feature_size}
    _atomic_save({"state_dict": weights, "hyper_parameters": hyper_parameters}, output)
    with open(os.path.splitext(output)[0] + ".json", "w") as handle:
        json.dump(hyper_parameters, handle, indent=2)
    logger.info(f"exported the teacher encoder of {checkpoint} to {output}: {hyper_parameters}")
    return output
