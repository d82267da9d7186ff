"""Helpers shared by the bundle tests."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.conftest import REPO_ROOT
from xlstm_monai.presets import SMALL, overrides
from xlstm_monai.workflow import read_structure_metrics, run_workflow

__all__ = ["SMALL_UNET", "config_path", "load_json", "load_yaml", "read_structure_metrics", "run_workflow"]

BUNDLES = REPO_ROOT / "bundles"

# a small XLSTMUNet with every part of the default one (encoder, token skips, conv path, decoder)
SMALL_UNET = overrides(SMALL)


def config_path(bundle: str, name: str) -> str:
    return str(BUNDLES / bundle / "configs" / name)


def load_yaml(bundle: str, name: str) -> dict:
    return yaml.safe_load(open(config_path(bundle, name)))


def load_json(path) -> dict:
    return json.loads(Path(path).read_text())
