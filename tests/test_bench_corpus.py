"""The corpus benchmark's memory gauge: the peak of the process and its workers together."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from xlstm_monai.bench.measure import TreeMemory


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").is_file(), reason="needs Linux's /proc/<pid>/smaps_rollup")
def test_the_peak_counts_a_child_process_once():
    hold = "import time; b = bytearray(400 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(2)"
    with TreeMemory(interval=0.1) as alone:
        pass
    with TreeMemory(interval=0.1) as memory:
        subprocess.run([sys.executable, "-c", hold], check=True)
    assert memory.peak_gib - alone.peak_gib > 0.35  # the child's 400 MiB, seen from the parent
    assert memory.peak_gib < alone.peak_gib + 1.0
