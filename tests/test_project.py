"""The project's promises about itself: the README's commands, CI, packaging."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO_ROOT


def _readme_commands() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_ci_runs_exactly_the_readme_test_command():
    """CI must run the README's own test command (the second of its two set-up commands), unchanged."""
    ci_lines = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in ci_lines


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
