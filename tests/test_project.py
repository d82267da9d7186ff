"""The project's promises about itself: the console entry point."""

from __future__ import annotations

import subprocess
import sys


def test_console_entry_point_lists_commands():
    result = subprocess.run(
        [sys.executable, "-m", "xlstm_monai.cli", "--help"],
        capture_output=True,
        text=True,
        env={"PAGER": "cat", "PATH": ""},
        timeout=120,
    )
    for command in ("demo", "datalist", "phantoms", "bench"):
        assert command in result.stdout + result.stderr, result.stderr  # fire prints help to stderr when piped
