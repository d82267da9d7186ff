"""Where the benchmarks find the real datasets."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["shared_dataset"]


def shared_dataset(name: str, data_dir: str | None = None) -> Path:
    """A real dataset's folder: ``data_dir``, else $XLSTM_MONAI_DATA/name, else ../shared/data/name by the checkout."""
    if data_dir:
        return Path(data_dir)
    return Path(os.environ.get("XLSTM_MONAI_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")) / name
