"""Shared fixtures: the thread count of CPU tests and the location of the real test images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("XLSTM_MONAI_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """The data-check cache of the test session (and its subprocesses), not the user's ~/.cache."""
    os.environ["XLSTM_MONAI_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(autouse=True)
def _two_threads():
    """Two threads, as on CI's 2-core machine; OMP_NUM_THREADS, when set, wins (e.g. beside another CPU job)."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", min(2, os.cpu_count() or 1))))


def shared_data(name: str) -> Path:
    """Path of a real dataset under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data {path} is absent (set XLSTM_MONAI_DATA to the shared data folder)")
    return path
