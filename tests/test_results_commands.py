"""
The documents' promises: every quoted `xlstm-monai bench ...` command runs today, and every relative link leads
somewhere.

Each command is parsed by the command line itself (Fire over :class:`xlstm_monai.cli.Commands`) with the benchmark
it reaches replaced by a stand-in that binds the arguments to the real benchmark's signature, so an option that the
command or the benchmark does not know fails here, and every network name of `bench hippocampus` is resolved through
the benchmark's own variant table. Nothing trains.
"""

from __future__ import annotations

import importlib
import inspect
import re
import shlex

import fire
import pytest

from tests.conftest import REPO_ROOT
from xlstm_monai import cli
from xlstm_monai.bench.hippocampus import NETWORKS, network_overrides

DOCUMENTS = ("README.md", "docs/results/README.md")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
# the benchmark function that each Bench command ends in, by module
BENCHMARKS = {
    "xlstm_monai.bench.networks": "benchmark_networks",
    "xlstm_monai.bench.inference": "benchmark_inference",
    "xlstm_monai.bench.data_check": "benchmark_data_check",
    "xlstm_monai.gpu_check": "gpu_check",
    "xlstm_monai.bench.sunnybrook": "benchmark_sunnybrook",
    "xlstm_monai.bench.label_efficiency_phantoms": "benchmark_label_efficiency",
    "xlstm_monai.bench.label_efficiency_hippocampus": "benchmark_label_efficiency_hippocampus",
    "xlstm_monai.bench.probe_hippocampus": "benchmark_probe_hippocampus",
    "xlstm_monai.bench.hippocampus": "benchmark_hippocampus",
    "xlstm_monai.bench.profile": "benchmark_profile",
    "xlstm_monai.bench.corpus": "benchmark_corpus",
}


def quoted_commands(text: str) -> list[str]:
    """Every `xlstm-monai bench ...` command of a markdown text: in inline code, or a line of a code block."""
    commands = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("xlstm-monai bench "):
                commands.append(" ".join(shlex.split(line, comments=True)))
    for code in re.findall(r"`([^`]+)`", FENCE.sub("", text)):
        if code.startswith("xlstm-monai bench "):
            commands.append(" ".join(code.split()))
    return commands


def _documented_commands() -> list[tuple[str, str]]:
    return [(doc, c) for doc in DOCUMENTS for c in quoted_commands((REPO_ROOT / doc).read_text())]


def check_command(command: str, monkeypatch) -> dict:
    """
    Run `command` through the command line with stand-ins for the benchmarks; return the arguments the benchmark
    received. Raises on an unknown command or option (Fire exits with 2, a stand-in raises TypeError) and on an
    unknown network name (ValueError).
    """
    received = {}
    for module_name, function_name in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        benchmark = inspect.unwrap(getattr(module, function_name))  # the real one, under an earlier stand-in

        def stand_in(*args, _signature=inspect.signature(benchmark), _name=function_name, **kwargs):
            received[_name] = _signature.bind(*args, **kwargs).arguments

        stand_in.__wrapped__ = benchmark
        monkeypatch.setattr(module, function_name, stand_in)
    argv = shlex.split(command)
    assert argv[:2] == ["xlstm-monai", "bench"], command
    try:
        fire.Fire(cli.Commands(), command=argv[1:], name="xlstm-monai")
    except SystemExit as error:  # Fire's answer to what it cannot consume
        raise AssertionError(f"the command line rejects {command!r} (exit {error.code})") from None
    assert len(received) == 1, f"{command!r} reached {sorted(received)}, not one benchmark"
    arguments = received.get("benchmark_hippocampus")
    if arguments is not None:  # the names go through the benchmark's own table, at the command's scale
        scale = arguments.get("scale", "cpu")
        network_overrides(tuple(arguments.get("networks", ())), scale)
        network_overrides((arguments.get("reference", "XLSTMUNet"),), scale)
    return received


def test_the_documents_quote_the_benchmark_commands():
    commands = [c for _, c in _documented_commands()]
    assert sum(c.startswith("xlstm-monai bench hippocampus --") for c in commands) >= 7, commands
    assert sum(c.startswith("xlstm-monai bench label-efficiency --") for c in commands) >= 2, commands
    for name in ("networks", "inference", "data-check", "sunnybrook"):
        assert any(c.startswith(f"xlstm-monai bench {name}") for c in commands), name


@pytest.mark.parametrize(
    "document, command", _documented_commands(), ids=lambda v: v if v in DOCUMENTS else " ".join(v.split()[2:4])
)
def test_a_quoted_benchmark_command_runs_today(document, command, monkeypatch):
    check_command(command, monkeypatch)


def test_the_check_fails_on_a_dead_name_and_an_unknown_option(monkeypatch):
    """The checks above can fail: a network the table does not know, an option no command takes."""
    text = "Run `xlstm-monai bench hippocampus --iterations 300 --networks XLSTMUNet,XLSTMUNet-feature16-fake`."
    (command,) = quoted_commands(text)
    with pytest.raises(ValueError, match="XLSTMUNet-feature16-fake"):
        check_command(command, monkeypatch)
    with pytest.raises(ValueError, match="XLSTMUNet-fake"):
        check_command("xlstm-monai bench hippocampus --reference XLSTMUNet-fake", monkeypatch)
    with pytest.raises(AssertionError, match="rejects"):
        check_command("xlstm-monai bench hippocampus --iteration 300", monkeypatch)
    with pytest.raises(TypeError):  # label-efficiency passes its options on: the benchmark's signature decides
        check_command("xlstm-monai bench label-efficiency --task hippocampus --fraction 0.1", monkeypatch)
    received = check_command("xlstm-monai bench hippocampus --networks UNet,SegResNet --folds 0", monkeypatch)
    assert received["benchmark_hippocampus"]["networks"] == ("UNet", "SegResNet")


def test_an_unknown_network_name_is_a_value_error_naming_the_valid_choices():
    with pytest.raises(ValueError) as error:
        network_overrides(("XLSTMUNet", "XLSTMUNet-nonexistent"))
    assert "XLSTMUNet-nonexistent" in str(error.value)
    assert all(name in str(error.value) for name in NETWORKS)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _markdown_files() -> list:
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("document", _markdown_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_relative_link_points_to_a_file_and_heading_that_exist(document):
    for target in re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", FENCE.sub("", document.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # an address, not a file of the repository
        assert not target.startswith("/"), f"{document.name}: {target} is not relative"
        path, _, anchor = target.partition("#")
        file = (document.parent / path).resolve() if path else document
        assert file.exists(), f"{document.name}: {target} points to no file"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", FENCE.sub("", file.read_text()), re.M)
            assert anchor in {_slug(h) for h in headings}, f"{document.name}: {target} points to no heading"
