"""
Reading weight files strictly: weights only, the hash of a released file checked against its bundle's
``large_files.yml``, and every key that does not fit named. A file that cannot be used stops the run with one line
that names it and says what is wrong, before any study is read.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
import yaml
from torch import nn

__all__ = [
    "CheckpointError",
    "file_hash",
    "load_model_weights",
    "read_checkpoint",
    "read_model_weights",
    "released_entry",
]

logger = logging.getLogger(__name__)

_SHOWN_KEYS = 5  # keys named per kind of mismatch; the rest are counted


class CheckpointError(SystemExit):
    """
    A model file that cannot be used: missing, damaged, not weights-only, or of another network.

    It is a ``SystemExit`` so that ``python -m monai.bundle run`` ends with this one line: MONAI wraps every
    ``Exception`` raised in a config expression in "Failed to evaluate ...", which would bury the file's name under a
    traceback. Code that loads a model itself catches it by name.
    """


def file_hash(path: str | Path, hash_type: str = "sha256") -> str:
    """Hex digest of a file (``hash_type``: any :mod:`hashlib` name, as ``large_files.yml`` gives it)."""
    digest = hashlib.new(hash_type)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def released_entry(path: str | Path) -> dict | None:
    """The ``large_files.yml`` entry of a bundle's ``models/FILE`` (path, url, hash), or None if it is not released."""
    path = Path(path).absolute()
    listing = path.parent.parent / "large_files.yml"
    if path.parent.name != "models" or not listing.is_file():
        return None
    entries = (yaml.safe_load(listing.read_text()) or {}).get("large_files") or []
    wanted = f"models/{path.name}"
    return next((e for e in entries if isinstance(e, Mapping) and e.get("path") == wanted), None)


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown + (f" (+{len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else "")


def _state_dict(checkpoint) -> Mapping | None:
    """The network weights in what a bundle writes: a bare state dict, or a dict with a "model"/"state_dict" entry."""
    if not isinstance(checkpoint, Mapping):
        return None
    for key in ("model", "state_dict"):
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    tensors = {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    return tensors if tensors and len(tensors) == len(checkpoint) else None


def read_checkpoint(path: str | Path, map_location="cpu"):
    """
    What a weight file holds, checked: it exists, a released file has its ``large_files.yml`` hash, and it reads with
    ``weights_only``. Raises :class:`CheckpointError` naming the file and the problem. A file that differs from its
    released hash but reads is taken as one trained here (training writes the same name), with a warning; the
    caller still checks that it fits its network.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no such file: train the bundle first, or fetch its released weights with "
            f"`python -m monai.bundle download_large_files --bundle_path {path.parent.parent}`"
        )
    entry = released_entry(path)
    altered = ""
    if entry and entry.get("hash_val"):
        hash_type = entry.get("hash_type", "sha256")
        digest = file_hash(path, hash_type)
        if digest != entry["hash_val"]:
            altered = f"{hash_type} {digest[:12]}... is not the released {entry['hash_val'][:12]}..."
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"{path}: not a weights-only checkpoint, refused ({_first_line(error)})") from None
    except Exception as error:  # torch raises RuntimeError, EOFError, zipfile and OS errors for a damaged file
        hint = f"; its {altered}" if altered else ""
        raise CheckpointError(f"{path}: damaged or truncated, cannot be read ({_first_line(error)}){hint}") from None
    if altered:
        logger.warning(f"{path}: {altered}: loaded as a file trained here, not the released one")
    return checkpoint


def read_model_weights(path: str | Path, map_location="cpu") -> dict:
    """The network weights of a model file (a bare state dict, or one under "model"), read by
    :func:`read_checkpoint`."""
    state = _state_dict(read_checkpoint(path, map_location))
    if state is None:
        raise CheckpointError(f"{path}: holds no network weights (expected a state dict, or one under 'model')")
    return dict(state)


def load_model_weights(network: nn.Module, path: str | Path, map_location="cpu") -> nn.Module:
    """
    Load a model file into ``network`` (checked by :func:`read_model_weights`); every key must fit. Weights the
    network drops by design (a decoder's deep supervision heads, which only served training) are not counted as
    unexpected. Raises :class:`CheckpointError` naming the keys that do not fit.
    """
    path = Path(path)
    state = read_model_weights(path, map_location)
    module = getattr(network, "module", network)
    own = module.state_dict()
    shapes = sorted(
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    )
    if shapes:
        raise CheckpointError(f"{path}: does not fit {type(module).__name__}: shapes differ: {_names(shapes)}")
    result = module.load_state_dict(state, strict=False)
    problems = [
        f"{title} {_names(sorted(keys))}"
        for title, keys in (("missing keys", result.missing_keys), ("unexpected keys", result.unexpected_keys))
        if keys
    ]
    if problems:
        raise CheckpointError(f"{path}: does not fit {type(module).__name__}: " + "; ".join(problems))
    return network


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
