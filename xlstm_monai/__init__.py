"""xLSTM-based 3D networks, transforms and tools for MONAI bundles."""

from __future__ import annotations

import importlib
from types import ModuleType

__version__ = "0.4.0"

_SUBMODULES = (
    "bench",
    "data",
    "distributed",
    "handlers",
    "networks",
    "phantoms",
    "presets",
    "ssl",
    "transforms",
    "workflow",
)


def __getattr__(name: str) -> ModuleType:
    # submodules load on first use, so bundle configs can write `$import xlstm_monai` and then
    # `xlstm_monai.networks.XLSTMUNet`, while the command line stays quick to start
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
