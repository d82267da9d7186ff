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

"""Loading a pretrained :class:`XLSTMEncoder` into the networks that contain one, with a report of what loaded."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from monai.networks.utils import copy_model_state
from torch import nn

from .checkpoint_file import CheckpointError, read_checkpoint
from .xlstm_encoder import XLSTMEncoder, filter_xlstm_ssl

__all__ = [
    "EncoderLoadReport",
    "FOUNDATION_CHECKPOINT",
    "find_encoder",
    "foundation_checkpoint",
    "fine_tuning_param_groups",
    "load_pretrained",
    "load_pretrained_encoder",
    "pretrained_start",
    "read_encoder_state",
]

logger = logging.getLogger(__name__)

# keys under which checkpoints written by ignite's CheckpointSaver or by export scripts keep the weights
_STATE_KEYS = ("encoder", "teacher", "state_dict", "model", "network")


@dataclass
class EncoderLoadReport:
    """What :func:`load_pretrained_encoder` did, key by key."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # encoder weights the checkpoint lacks: left as initialised
    unexpected: list[str] = field(default_factory=list)  # checkpoint encoder weights this network has no use for
    mismatched: list[str] = field(default_factory=list)  # same key, different shape: not loaded
    resized: list[str] = field(default_factory=list)  # position embeddings resized to this network's grid
    decoder_loaded: list[str] = field(default_factory=list)  # U-Net decoder weights restored from the export
    decoder_skipped: list[str] = field(default_factory=list)  # decoder weights of another shape (the output head)

    @property
    def ok(self) -> bool:
        return bool(self.loaded) and not self.missing and not self.mismatched

    def summary(self) -> str:
        lines = [f"pretrained encoder {self.source}: loaded {len(self.loaded)} tensors, missing {len(self.missing)}"]
        if self.decoder_loaded or self.decoder_skipped:
            lines.append(
                f"  decoder: loaded {len(self.decoder_loaded)} tensors, kept as initialised "
                f"{len(self.decoder_skipped)} of another shape"
            )
        for title, keys in (
            ("missing (left as initialised)", self.missing),
            ("shape mismatch (not loaded)", self.mismatched),
            ("unexpected (not used by this network)", self.unexpected),
            ("resized", self.resized),
            ("decoder, another shape (kept as initialised)", self.decoder_skipped),
        ):
            if keys:
                lines.append(f"  {title}: {', '.join(keys)}")
        return "\n".join(lines)


def find_encoder(network: nn.Module) -> XLSTMEncoder:
    """The :class:`XLSTMEncoder` of a network (itself, ``.encoder``, or inside a DDP/DataParallel wrapper)."""
    module = getattr(network, "module", network)
    if isinstance(module, XLSTMEncoder):
        return module
    encoder = getattr(module, "encoder", None)
    if isinstance(encoder, XLSTMEncoder):
        return encoder
    raise TypeError(f"{type(module).__name__} has no XLSTMEncoder (as itself or as .encoder).")


# settings that decide the weights' shapes; the rest (img_size, tokens) are resized or reported per key
_ARCHITECTURE_KEYS = (
    "in_channels",
    "patch_size",
    "embed_dim",
    "depth",
    "num_heads",
    "qk_conv_kernel_size",
    "layer_scale",
)


def _load(checkpoint: str | os.PathLike | Mapping) -> Mapping:
    """A state dict as given, or a file read with :func:`read_checkpoint` (hash of a released file, weights only)."""
    return checkpoint if isinstance(checkpoint, Mapping) else read_checkpoint(checkpoint)


# settings that exports of earlier versions do not record, with the value they had then: 0.1.0 had no q/k convolution
_UNRECORDED = {"qk_conv_kernel_size": 0}


def _check_architecture(saved: Mapping, encoder: XLSTMEncoder, source: str) -> None:
    """A clear error naming the settings when an export's hyper-parameters differ from the network's."""
    own = encoder.hyper_parameters()
    if {"patch_size", "embed_dim", "depth", "num_heads"} <= saved.keys():  # a full record, maybe of an earlier version
        saved = {**_UNRECORDED, **saved}
    differing = [
        f"{k}: checkpoint {saved[k]} vs network {own[k]}"
        for k in _ARCHITECTURE_KEYS
        if k in saved and saved[k] != own[k]
    ]
    if differing:
        plain = saved.get("qk_conv_kernel_size") == 0 and own["qk_conv_kernel_size"] != 0
        raise ValueError(
            f"pretrained encoder {source} was trained with another architecture: "
            + "; ".join(differing)
            + ". Set the network_def to the pretraining settings"
            + (" (a 0.1.0 export, with the plain mLSTM block: set qk_conv_kernel_size: 0)." if plain else ".")
        )


def read_encoder_state(checkpoint: str | os.PathLike | Mapping) -> dict[str, torch.Tensor]:
    """Encoder weights, keyed as in :class:`XLSTMEncoder`, from a checkpoint file or an in-memory state dict."""
    state = _load(checkpoint)
    for key in _STATE_KEYS:  # unwrap {"state_dict": {...}}-style containers
        if isinstance(state.get(key), Mapping) and not isinstance(state.get(key), torch.Tensor):
            state = state[key]
            break
    encoder_state: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        mapped = filter_xlstm_ssl(key, value)
        if mapped is not None:
            encoder_state[mapped[0]] = mapped[1]
    if not encoder_state:
        raise ValueError(
            "no XLSTMEncoder weights found in "
            f"{checkpoint if not isinstance(checkpoint, Mapping) else 'the given state dict'}."
        )
    return encoder_state


def _resize_position_embedding(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(1, C, *grid) embedding resized to the target grid, as the encoder does for inputs of another size."""
    mode = "trilinear" if value.ndim == 5 else "bilinear"
    return F.interpolate(value.float(), size=tuple(target.shape[2:]), mode=mode, align_corners=False).to(target.dtype)


def load_pretrained_encoder(
    network: nn.Module, checkpoint: str | os.PathLike | Mapping, strict: bool = True
) -> EncoderLoadReport:
    """
    Load pretrained encoder weights (a ``pretrain_ssl`` export, a full SSL checkpoint, or another network's
    checkpoint that contains an :class:`XLSTMEncoder`) into ``network``'s encoder and report what loaded.

    A position embedding laid out on another grid is resized. Class and mask tokens that the target has no
    place for are reported as unexpected, not silently dropped.

    Args:
        network: an :class:`XLSTMEncoder`, or a network with one as ``.encoder`` (``XLSTMUNet``,
            ``XLSTMClassifier``), possibly wrapped in DDP.
        checkpoint: path of a ``.pt`` file or a state dict.
        strict: raise a ValueError naming the keys when any encoder weight is missing or has another shape
            (a checkpoint of a different architecture). Defaults to True.
    """
    encoder = find_encoder(network)
    source = str(checkpoint) if not isinstance(checkpoint, Mapping) else "<state dict>"
    loaded = _load(checkpoint)
    if isinstance(loaded.get("hyper_parameters"), Mapping):
        _check_architecture(loaded["hyper_parameters"], encoder, source)
    state = read_encoder_state(loaded)
    target = encoder.state_dict()
    report = EncoderLoadReport(source=source)
    if "pos_embed" in state and "pos_embed" in target:
        pos, pos_target = state["pos_embed"], target["pos_embed"]
        if pos.shape != pos_target.shape and pos.shape[:2] == pos_target.shape[:2] and pos.ndim == pos_target.ndim:
            state["pos_embed"] = _resize_position_embedding(pos, pos_target)
            report.resized.append(f"pos_embed {tuple(pos.shape[2:])} -> {tuple(pos_target.shape[2:])}")
    report.unexpected = sorted(k for k in state if k not in target)
    report.mismatched = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in target.items()
        if k in state and state[k].shape != v.shape
    )
    _, updated, unchanged = copy_model_state(encoder, state, inplace=True)
    report.loaded = list(updated)
    mismatched_keys = {entry.split(" ", 1)[0] for entry in report.mismatched}
    report.missing = [k for k in unchanged if k not in mismatched_keys]
    logger.info(report.summary())
    if strict and not report.ok:
        raise ValueError(
            f"{report.summary()}\nThe checkpoint does not match this network's encoder "
            "(check embed_dim, depth, num_heads, patch_size and in_channels against the pretraining config)."
        )
    return report


def load_pretrained(
    network: nn.Module, checkpoint: str | os.PathLike | Mapping, strict: bool = True
) -> EncoderLoadReport:
    """
    Load a ``pretrain_ssl`` export into ``network``: the encoder as :func:`load_pretrained_encoder` does and, when
    the export also holds a U-Net decoder (``decoder.*`` keys, from restoration pretraining) and the network has
    one, every decoder weight of the same shape; the rest (the output head, sized for the task's classes) stays
    as initialised and is listed in the report.
    """
    source = str(checkpoint) if not isinstance(checkpoint, Mapping) else "<state dict>"
    loaded = _load(checkpoint)
    report = load_pretrained_encoder(network, loaded, strict=strict)
    report.source = source
    state = loaded.get("state_dict", loaded)
    saved = {
        k[len("decoder.") :]: v for k, v in state.items() if k.startswith("decoder.") and isinstance(v, torch.Tensor)
    }
    decoder = getattr(getattr(network, "module", network), "decoder", None)
    if saved and isinstance(decoder, nn.Module):
        own = decoder.state_dict()
        usable = {k: v for k, v in saved.items() if k in own and own[k].shape == v.shape}
        report.decoder_skipped = sorted(
            f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" if k in own else k
            for k, v in saved.items()
            if k not in usable
        )
        _, report.decoder_loaded, _ = copy_model_state(decoder, usable, inplace=True)
        logger.info(report.summary())
    return report


FOUNDATION_CHECKPOINT = "pretrain_ssl/models/brain_mri_pretrained.pt"  # under the installed bundles


def foundation_checkpoint() -> str:
    """
    The released brain-MRI foundation checkpoint that ``pretrain_ssl`` ships (inside the installed package, or in the
    checkout's bundles/), for a fine-tuning config's ``pretrained_checkpoint``.
    """
    from xlstm_monai.workflow import bundles_dir

    path = bundles_dir() / FOUNDATION_CHECKPOINT
    if not path.is_file():
        raise CheckpointError(
            f"{path}: the foundation checkpoint is not installed: reinstall xlstm-monai, or run "
            f"`python -m monai.bundle download_large_files --bundle_path {path.parent.parent}`"
        )
    return str(path)


def pretrained_start(pretrained_checkpoint: str = "", pretrained_encoder: str = "") -> str:
    """
    The pretrain_ssl export a training config starts from: ``pretrained_checkpoint``, or the same file under its
    former name ``pretrained_encoder`` (kept for one release, with a deprecation warning); '' for random
    initialisation. Giving both, with different files, is an error rather than a silent choice.
    """
    if pretrained_encoder:
        warnings.warn(
            "pretrained_encoder is deprecated since bundle 0.3.0 and will be removed in 0.5.0: the export also holds "
            "the U-Net decoder, so the setting is now called pretrained_checkpoint",
            FutureWarning,
            stacklevel=2,
        )
        logger.warning("pretrained_encoder is deprecated: use pretrained_checkpoint (same file, same effect)")
        if pretrained_checkpoint and str(pretrained_checkpoint) != str(pretrained_encoder):
            raise ValueError(
                f"pretrained_checkpoint ({pretrained_checkpoint}) and the deprecated pretrained_encoder "
                f"({pretrained_encoder}) name different files: set pretrained_checkpoint only"
            )
    return str(pretrained_checkpoint or pretrained_encoder or "")


def _output_layer(network: nn.Module) -> nn.Module | None:
    """
    The layers a pretrain_ssl export never provides: XLSTMUNet's decoder output blocks (with its deep supervision
    heads), XLSTMClassifier's head.
    """
    decoder = getattr(network, "decoder", None)
    if decoder is not None and hasattr(decoder, "out"):
        return nn.ModuleList([decoder.out, *getattr(decoder, "deep_supervision_heads", [])])
    return getattr(network, "head", None)


def fine_tuning_param_groups(network: nn.Module, learning_rate: float, pretrained_lr_scale: float = 1.0):
    """
    What the optimizer updates, and how fast. With ``pretrained_lr_scale`` 1 (the default, and always for random
    initialisation): every parameter at the optimizer's learning rate. Otherwise, discriminative fine-tuning: the
    pretrained body at ``learning_rate * pretrained_lr_scale`` and the new output layer at ``learning_rate``, so a
    large step size for the new layer does not wash out what pretraining learned (groups made by MONAI's
    ``generate_param_groups``).
    """
    module = getattr(network, "module", network)
    head = _output_layer(module)
    if float(pretrained_lr_scale) == 1.0 or head is None:
        return network.parameters()
    from monai.optimizers import generate_param_groups

    groups = generate_param_groups(
        network=module, layer_matches=[lambda m: head], match_types=["select"], lr_values=[learning_rate]
    )
    groups[-1]["lr"] = learning_rate * float(pretrained_lr_scale)  # the rest: the pretrained body
    return [{**group, "params": list(group["params"])} for group in groups]
