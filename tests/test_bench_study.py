"""The benchmarks' common floor: the record written, the command recorded, paired differences, the tuning fold."""

from __future__ import annotations

import json
import sys

import pytest

from xlstm_monai.bench import study


def test_the_report_is_written_as_json_and_its_table_printed(tmp_path, capsys):
    output = tmp_path / "deep" / "report.json"
    report = {"command": "xlstm-monai bench networks", "runs": [{"dice": 0.8}]}
    assert study.write_report(report, output, "| a |\n|---|") is report
    assert json.loads(output.read_text()) == report
    assert capsys.readouterr().out == f"| a |\n|---|\nwritten: {output}\n"


def test_the_command_is_the_real_invocation_from_the_command_line(monkeypatch):
    argv = ["/venv/bin/xlstm-monai", "bench", "label-efficiency", "--task", "hippocampus", "--network", '{"a": 1}']
    monkeypatch.setattr(sys, "argv", argv)
    assert study.command("label-efficiency", task="ignored") == (
        "xlstm-monai bench label-efficiency --task hippocampus --network '{\"a\": 1}'"
    )
    monkeypatch.setattr(sys, "argv", ["/repo/xlstm_monai/cli.py", "bench", "gpu-check", "--dry_run", "true"])
    assert study.command("gpu-check") == "xlstm-monai bench gpu-check --dry_run true"


def test_the_command_is_built_from_the_arguments_elsewhere(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["pytest"])
    line = study.command(
        "label-efficiency", task="hippocampus", folds=(0, 1), recipe={"random": {"learning_rate": 0.01}}, seeds=None
    )
    assert line == (
        "xlstm-monai bench label-efficiency --task hippocampus --folds 0,1 "
        '--recipe \'{"random":{"learning_rate":0.01}}\''
    )


def test_the_cache_key_is_a_short_hash_of_the_settings_in_any_key_order():
    assert study.cache_key({"a": 1, "b": 2}, 300) == study.cache_key({"b": 2, "a": 1}, 300)
    assert study.cache_key({"a": 1}, 300) != study.cache_key({"a": 1}, 301)
    assert len(study.cache_key({"a": 1})) == 8


def test_mean_sd_and_paired_differences():
    assert study.mean_sd([0.8, 0.9]) == "0.850 +- 0.071"
    assert study.mean_sd([0.8]) == "0.800 +- 0.000"
    differences = study.paired_differences({0: 0.82, 1: 0.90, 2: 0.7}, {0: 0.80, 1: 0.91})
    assert differences == pytest.approx({0: 2.0, 1: -1.0})  # fold 2 has no pair
    assert study.mean_sd(list(differences.values()), digits=1, signed=True) == "+0.5 +- 2.1"


def test_the_tuning_fold_must_not_be_reported():
    study.check_tune_fold(4, (0, 1, 2))
    with pytest.raises(ValueError, match="the tuning fold 1 must not be a reported fold"):
        study.check_tune_fold(1, (0, 1, 2))


@pytest.mark.parametrize(
    "name, arguments",
    [
        ("hippocampus", {"scale": "cpu", "folds": (0, 1), "networks": ("XLSTMUNet", "UNet"), "iterations": 600}),
        (
            "label-efficiency",
            {"task": "hippocampus", "folds": (0,), "recipe": {"random": {"learning_rate": 0.01}}, "network": {"a": 1}},
        ),
        ("label-efficiency", {"task": "heart_phantoms", "num_cases": 12, "fractions": (0.1, 1.0)}),
        ("networks", {"device": "cpu", "train_sizes": (64, 96), "networks": ("UNet",), "warmup": 0}),
        ("inference", {"bundles": ("heart_seg_ct",), "threads": 2, "volumes": 3}),
        ("data-check", {"volumes": 10, "size": 32}),
        ("sunnybrook", {"epochs": 2, "small": True}),
    ],
)
def test_a_built_command_runs_through_the_command_line(name, arguments, monkeypatch):
    from tests.test_results_commands import check_command

    monkeypatch.setattr(sys, "argv", ["pytest"])
    line = study.command(name, **arguments)
    received = check_command(line, monkeypatch)
    (bound,) = received.values()
    if "recipe" in arguments:
        assert bound["recipe"] == arguments["recipe"] and bound["network"] == arguments["network"]


def test_a_measurement_entry_point_writes_its_result(tmp_path, monkeypatch):
    """``python -m xlstm_monai.bench.measure KIND BUNDLE OVERRIDES OUT`` runs a module function and writes JSON."""
    from xlstm_monai.bench import measure

    calls = []
    monkeypatch.setitem(measure.MEASUREMENTS, "train", lambda bundle, overrides: calls.append(bundle) or overrides)
    out = tmp_path / "result.json"
    measure.main(["train", "heart_seg_ct", '{"epochs": 1}', str(out)])
    assert calls == ["heart_seg_ct"] and json.loads(out.read_text()) == {"epochs": 1}
    with pytest.raises(SystemExit):
        measure.main(["compile", "heart_seg_ct", "{}", str(out)])  # an unknown measurement
