"""bench inference: the network of an overlay config timed beside the bundle's default, each unit cached."""

import json

import pytest

from xlstm_monai.bench import inference


def test_overlay_settings_are_the_bundles_overlay_config():
    large = inference._overlay_settings("heart_seg_ct", "large.yaml")
    assert large["network_def#embed_dim"] == 384 and large["network_def#depth"] == 12
    assert inference._overlay_settings("heart_seg_ct", None) == {}
    assert inference._overlay_settings("heart_seg_ct", "invert_labels=true") == {"invert_labels": True}
    with pytest.raises(FileNotFoundError, match="configs/missing.yaml"):
        inference._overlay_settings("heart_seg_ct", "missing.yaml")


def test_overlay_network_is_a_unit_of_its_own_with_a_ratio_to_the_default(tmp_path, monkeypatch):
    ran = []

    def fake_run(bundle, root, backend, threads, volumes, overlay=None):
        ran.append((bundle, backend, overlay))
        return {
            "bundle": bundle,
            "backend": backend,
            "variant": overlay or "default",
            "seconds_per_volume": 20.0 if overlay else 10.0,
            "peak_gib": 1.0,
            "volumes": volumes,
            "threads": threads,
        }

    prepared = []
    monkeypatch.setattr(inference, "_run", fake_run)
    monkeypatch.setattr(inference, "_prepare", lambda bundle, root, volumes, onnx, overlay=None: prepared.append(onnx))
    output = tmp_path / "record.json"
    for _ in range(2):  # the second call finds every unit in the record
        inference.benchmark_inference(
            ("heart_seg_ct",), ("pytorch",), 2, 3, str(tmp_path / "work"), str(output), ("large.yaml",)
        )
    assert ran == [("heart_seg_ct", "pytorch", None), ("heart_seg_ct", "pytorch", "large.yaml")]
    assert prepared == [False, False]  # no ONNX export without the ONNX Runtime backend
    record = json.loads(output.read_text())
    assert [r["variant"] for r in record["runs"]] == ["default", "large.yaml"]
    table = inference.format_table(record)
    assert "| large.yaml | pytorch | 20.0 | 1.00 | 2.00x |" in table
    assert "--overlays large.yaml" in record["command"]
