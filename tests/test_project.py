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


def test_readme_opens_with_demo_and_test_commands():
    demo, tests = _readme_commands()[:2]
    assert demo.endswith("xlstm-monai demo") and "torch==2.13.0" in demo
    assert tests.endswith("python -m pytest -q tests") and '".[test]"' in tests


def test_ci_runs_exactly_the_readme_test_command():
    ci_lines = [line for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("python")]
    assert ci_lines == [_readme_commands()[1]]


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
