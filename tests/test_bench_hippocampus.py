"""The hippocampus field benchmark: each variant changes one thing, every network builds from the bundle's config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from tests.bundles.helpers import config_path
from tests.conftest import REPO_ROOT
from xlstm_monai.bench.hippocampus import NETWORKS, _networks, format_report

# names that records of bundle 0.1.0 carry: two changes each, and the second one's block is plain (its name predates
# the q/k convolution as the default)
RECORDED_NAMES = ("XLSTMUNet-feature16-qkconv", "XLSTMUNet-feature16-layerscale")


def _changed(name: str) -> dict:
    """The overrides in which a network differs from the CPU XLSTMUNet."""
    reference, mine = _networks("cpu")["XLSTMUNet"], _networks("cpu")[name]
    return {k: v for k, v in mine.items() if reference.get(k) != v}


@pytest.mark.parametrize("name", [n for n in NETWORKS if n.startswith("XLSTMUNet-") and n not in RECORDED_NAMES])
def test_each_xlstmunet_variant_changes_one_setting_per_word_of_its_name(name):
    assert len(_changed(name)) == name.count("-"), _changed(name)


@pytest.mark.parametrize("name", NETWORKS)
def test_every_network_builds_from_the_bundle_config_and_segments_a_crop(name):
    parser = ConfigParser()
    parser.read_config(config_path("brain_hippocampus", "train.yaml"))
    parser.update(_networks("cpu")[name])
    network = parser.get_parsed_content("network_def").eval()
    with torch.no_grad():
        out = network(torch.rand(1, 1, *parser.get_parsed_content("roi_size")))
    assert out.shape == (1, 3, 48, 64, 48)
    mlstm = sum(p.numel() for n, p in network.named_parameters() if "mlstm" in n)
    assert (mlstm == 0) == ("noblocks" in name or not name.startswith("XLSTMUNet"))
    qk_conv = sum(p.numel() for n, p in network.named_parameters() if "qk_conv" in n)
    plain = "noqkconv" in name or name == "XLSTMUNet-feature16-layerscale"
    assert (qk_conv > 0) == (mlstm > 0 and not plain)  # the bundles' blocks unless the name says not


@pytest.mark.parametrize(
    "record, name",
    [
        ("hippocampus_levers.json", "XLSTMUNet-feature16-qkconv"),
        ("hippocampus_levers.json", "XLSTMUNet-feature16-layerscale"),
        ("hippocampus_schedule.json", "XLSTMUNet-feature16-qkconv"),
    ],
)
def test_a_recorded_name_builds_what_its_record_ran(record, name):
    """The names of 0.1.0's records keep their overrides; the plain block, 0.1.0's default then, is now explicit."""
    recorded = json.loads((REPO_ROOT / "docs" / "results" / record).read_text())["settings"]["networks"][name]
    if name == "XLSTMUNet-feature16-layerscale":
        recorded = {**recorded, "network_def#qk_conv_kernel_size": 0}
    assert _networks("cpu")[name] == recorded
    assert _networks("cpu")["XLSTMUNet-feature16-qkconv"] == _networks("cpu")["XLSTMUNet-feature16"]


def test_an_unknown_network_name_is_an_error_that_lists_the_known_names(tmp_path, monkeypatch):
    from xlstm_monai.bench import hippocampus

    (tmp_path / "dataset.json").write_text("{}")
    monkeypatch.setattr(hippocampus, "shared_dataset", lambda name, data_dir: tmp_path)
    monkeypatch.setattr(hippocampus, "train_and_evaluate", lambda *args, **kwargs: pytest.fail("trained"))
    common = {"work_dir": str(tmp_path / "work"), "output": str(tmp_path / "out.json")}
    for options in ({"networks": ("XLSTMUNet", "XLSTMUNet-feature32")}, {"reference": "XLSTMUNet-feature32"}):
        with pytest.raises(ValueError, match="XLSTMUNet-feature32") as error:
            hippocampus.benchmark_hippocampus(**options, **common)
        assert all(name in str(error.value) for name in NETWORKS)


def test_the_report_pairs_each_network_with_xlstmunet_fold_by_fold():
    runs = [
        {"network": "XLSTMUNet", "fold": 0, "dice": 0.80, "hd95": 2.0, "learning_rate": 0.01, "train_minutes": 5},
        {"network": "XLSTMUNet", "fold": 1, "dice": 0.90, "hd95": 1.0, "learning_rate": 0.01, "train_minutes": 5},
        {"network": "UNet", "fold": 1, "dice": 0.88, "hd95": 1.5, "learning_rate": 0.003, "train_minutes": 4},
        {"network": "UNet", "fold": 0, "dice": 0.84, "hd95": 2.5, "learning_rate": 0.003, "train_minutes": 4},
    ]
    table = format_report({"runs": runs}).splitlines()
    unet = next(line for line in table if line.startswith("| UNet "))
    assert "0.860 +- 0.028" in unet  # mean +- sd of 0.84 and 0.88
    assert "+1.0 +- 4.2" in unet  # paired differences +4 and -2 points, not the difference of the means alone
    against_unet = format_report({"runs": runs, "reference": "UNet"}).splitlines()
    assert "Dice - UNet" in against_unet[0]
    assert "-1.0 +- 4.2" in next(line for line in against_unet if line.startswith("| XLSTMUNet "))


def test_a_report_without_xlstmunet_leaves_the_paired_column_empty():
    runs = [{"network": "UNet", "fold": 0, "dice": 0.84, "hd95": 2.5, "learning_rate": 0.003, "train_minutes": 4}]
    assert "nan" not in format_report({"runs": runs})


def test_a_unit_records_the_bundle_version_and_is_read_back_not_rerun(tmp_path, monkeypatch):
    from xlstm_monai.bench import hippocampus_runs

    calls = []

    def fake_workflow(bundle, configs, workflow_type, **overrides):
        calls.append(configs)
        if "evaluate.yaml" in configs:
            out = Path(overrides["bundle_root"]) / "eval"
            out.mkdir(parents=True)
            (out / "per_structure_metrics.csv").write_text(
                "structure,val_mean_dice,val_hd95\nanterior,0.8,2.0\nposterior,0.9,1.0\n"
            )

    monkeypatch.setattr(hippocampus_runs, "run_workflow", fake_workflow)
    datalist = tmp_path / "fold0.json"
    datalist.write_text(json.dumps({"training": [{"fold": f % 5} for f in range(10)]}))
    version = json.loads(Path(config_path("brain_hippocampus", "metadata.json")).read_text())["version"]

    def unit():
        return hippocampus_runs.train_and_evaluate(tmp_path / "unit", tmp_path, datalist, 0, 8, 2, 0.01)

    first = unit()
    assert first["bundle_version"] == version and first["dice"] == pytest.approx(0.85)
    assert first["iterations"] == 8 and first["labeled_cases"] == 8  # 2 epochs of 4 batches
    assert unit() == first and len(calls) == 2  # read back from result.json, not trained again


def test_a_single_learning_rate_is_used_without_tuning_runs(tmp_path, monkeypatch):
    from xlstm_monai.bench import hippocampus

    (tmp_path / "dataset.json").write_text("{}")
    trained = []

    def fake_unit(root, source, datalist, fold, steps, batch_size, lr, overrides, record):
        trained.append((record["network"], fold, steps, lr))
        return {**record, "fold": fold, "dice": 0.8, "hd95": 2.0, "learning_rate": lr, "train_minutes": 1.0}

    monkeypatch.setattr(hippocampus, "shared_dataset", lambda name, data_dir: tmp_path)
    monkeypatch.setattr(hippocampus, "build_datalist", lambda *args, **kwargs: None)
    monkeypatch.setattr(hippocampus, "train_and_evaluate", fake_unit)
    common = {"folds": (0, 1), "networks": ("XLSTMUNet", "UNet"), "work_dir": str(tmp_path / "work")}

    single = hippocampus.benchmark_hippocampus(learning_rates=(0.01,), output=str(tmp_path / "one.json"), **common)
    assert sorted(trained) == sorted((n, f, 600, 0.01) for n in ("XLSTMUNet", "UNet") for f in (0, 1))
    assert single["learning_rate_choice"] == {"chosen": {"XLSTMUNet": 0.01, "UNet": 0.01}, "runs": []}

    trained.clear()
    hippocampus.benchmark_hippocampus(learning_rates=(0.003, 0.01), output=str(tmp_path / "two.json"), **common)
    assert sum(fold == 4 and steps == 300 for _, fold, steps, _ in trained) == 4  # two rates per network on fold 4


def test_the_command_line_passes_fold_0_alone(monkeypatch):
    """`--folds 0` is fold 0 only (0 is falsy: it once fell back to the default folds 0, 1, 2)."""
    from xlstm_monai import cli
    from xlstm_monai.bench import hippocampus

    seen = {}
    monkeypatch.setattr(hippocampus, "benchmark_hippocampus", lambda **kwargs: seen.update(kwargs))
    cli.Bench().hippocampus(folds=0, networks="UNETR")
    assert seen["folds"] == (0,) and seen["networks"] == ("UNETR",)


def test_units_of_an_earlier_record_run_the_same_way_are_read_back_not_trained(tmp_path, monkeypatch):
    from xlstm_monai.bench import hippocampus

    (tmp_path / "dataset.json").write_text("{}")
    trained = []

    def fake_unit(root, source, datalist, fold, steps, batch_size, lr, overrides, record):
        trained.append((record["network"], fold))
        return {**record, "fold": fold, "dice": 0.8, "hd95": 2.0, "learning_rate": lr, "train_minutes": 1.0}

    monkeypatch.setattr(hippocampus, "shared_dataset", lambda name, data_dir: tmp_path)
    monkeypatch.setattr(hippocampus, "build_datalist", lambda *args, **kwargs: None)
    monkeypatch.setattr(hippocampus, "train_and_evaluate", fake_unit)
    common = {"folds": (0, 1), "networks": ("XLSTMUNet", "UNet"), "learning_rates": (0.01,)}
    first = hippocampus.benchmark_hippocampus(work_dir=str(tmp_path / "a"), output=str(tmp_path / "a.json"), **common)
    first["runs"][0]["dice"] = 0.9  # the record's own figure is what comes back
    (tmp_path / "a.json").write_text(json.dumps(first))

    trained.clear()
    more = {**common, "networks": ("XLSTMUNet", "UNet", "SegResNet")}
    again = hippocampus.benchmark_hippocampus(
        work_dir=str(tmp_path / "b"), output=str(tmp_path / "b.json"), reuse=(str(tmp_path / "a.json"),), **more
    )
    assert sorted(trained) == [("SegResNet", 0), ("SegResNet", 1)]  # only the units no record holds
    assert again["runs"][0]["dice"] == 0.9 and again["runs"][0]["read_from"] == str(tmp_path / "a.json")

    trained.clear()  # another number of steps is another unit
    hippocampus.benchmark_hippocampus(
        work_dir=str(tmp_path / "c"),
        output=str(tmp_path / "c.json"),
        reuse=(str(tmp_path / "a.json"),),
        iterations=900,
        **common,
    )
    assert len(trained) == 4
