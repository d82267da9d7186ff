from __future__ import annotations

import pytest
import torch

from xlstm_monai.networks import (
    CheckpointError,
    XLSTMClassifier,
    XLSTMEncoder,
    XLSTMUNet,
    fine_tuning_param_groups,
    load_pretrained_encoder,
)
from xlstm_monai.presets import TINY


def _pretrained(path, **overrides):
    torch.manual_seed(1)
    encoder = XLSTMEncoder(img_size=32, num_cls_tokens=1, mask_token=True, **{**TINY, **overrides})
    torch.save({"state_dict": encoder.state_dict(), "hyper_parameters": {"embed_dim": 48}}, path)
    return encoder


def test_encoder_loads_into_unet_with_zero_missing_keys(tmp_path):
    encoder = _pretrained(tmp_path / "encoder.pt")
    net = XLSTMUNet(1, 3, img_size=32, feature_size=4, **TINY)
    report = load_pretrained_encoder(net, tmp_path / "encoder.pt")
    assert report.missing == [] and report.mismatched == []
    assert len(report.loaded) == len(net.encoder.state_dict())
    # the UNet has no class or mask token: reported, not silently dropped
    assert report.unexpected == ["cls_token", "mask_token"]
    for key, value in net.encoder.state_dict().items():
        torch.testing.assert_close(value, encoder.state_dict()[key])


def test_encoder_loads_into_classifier_with_zero_missing_keys(tmp_path):
    encoder = _pretrained(tmp_path / "encoder.pt")
    net = XLSTMClassifier(1, 2, img_size=32, **TINY)
    report = load_pretrained_encoder(net, tmp_path / "encoder.pt")
    assert report.missing == [] and report.unexpected == ["mask_token"]
    torch.testing.assert_close(net.encoder.cls_token, encoder.cls_token)


def test_a_qk_conv_export_loads_into_the_same_blocks_and_names_the_setting_otherwise(tmp_path):
    torch.manual_seed(1)
    encoder = XLSTMEncoder(img_size=32, num_cls_tokens=1, qk_conv_kernel_size=3, **TINY)
    path = tmp_path / "encoder.pt"
    torch.save({"state_dict": encoder.state_dict(), "hyper_parameters": encoder.hyper_parameters()}, path)
    net = XLSTMClassifier(1, 2, img_size=32, qk_conv_kernel_size=3, **TINY)
    report = load_pretrained_encoder(net, path)
    assert report.missing == [] and report.unexpected == []
    torch.testing.assert_close(net.encoder.blocks[1].qk_conv.weight, encoder.blocks[1].qk_conv.weight)
    with pytest.raises(ValueError, match="qk_conv_kernel_size: checkpoint 3 vs network 0"):
        load_pretrained_encoder(XLSTMClassifier(1, 2, img_size=32, qk_conv_kernel_size=0, **TINY), path)


def test_the_classes_default_to_the_shipped_blocks_and_a_0_1_0_export_names_the_setting(tmp_path):
    """0.1.0 exports record no qk_conv_kernel_size (the plain block): the report says to set it to 0."""
    assert XLSTMUNet(1, 3, img_size=32, **TINY).encoder.qk_conv_kernel_size == 3
    assert XLSTMClassifier(1, 2, img_size=32, **TINY).encoder.qk_conv_kernel_size == 3
    torch.manual_seed(1)
    plain = XLSTMEncoder(img_size=32, qk_conv_kernel_size=0, **TINY)
    recorded = {k: v for k, v in plain.hyper_parameters().items() if k != "qk_conv_kernel_size"}
    path = tmp_path / "encoder.pt"
    torch.save({"state_dict": plain.state_dict(), "hyper_parameters": recorded}, path)
    with pytest.raises(ValueError, match=r"a 0.1.0 export.*set qk_conv_kernel_size: 0"):
        load_pretrained_encoder(XLSTMUNet(1, 3, img_size=32, **TINY), path)
    report = load_pretrained_encoder(XLSTMUNet(1, 3, img_size=32, qk_conv_kernel_size=0, **TINY), path)
    assert report.ok


def test_ssl_checkpoint_keys_are_mapped_and_heads_dropped():
    torch.manual_seed(0)
    teacher = XLSTMEncoder(img_size=32, **TINY)
    state = {f"teacher.encoder.{k}": v for k, v in teacher.state_dict().items()}
    state.update({f"student.encoder.{k}": torch.zeros_like(v) for k, v in teacher.state_dict().items()})
    state["teacher.head.mlp.0.weight"] = torch.zeros(4, 4)
    state["center"] = torch.zeros(1, 8)
    net = XLSTMClassifier(1, 2, img_size=32, **TINY)
    report = load_pretrained_encoder(net, state)
    assert report.missing == [] and report.unexpected == []
    torch.testing.assert_close(net.encoder.blocks[0].mlstm_layer.q.weight, teacher.blocks[0].mlstm_layer.q.weight)


def test_position_embedding_is_resized(tmp_path):
    _pretrained(tmp_path / "encoder.pt")
    net = XLSTMUNet(1, 3, img_size=64, feature_size=4, **TINY)
    report = load_pretrained_encoder(net, tmp_path / "encoder.pt")
    assert report.missing == [] and report.resized == ["pos_embed (4, 4, 4) -> (8, 8, 8)"]


def test_wrong_architecture_fails_loudly(tmp_path):
    _pretrained(tmp_path / "encoder.pt", depth=1)
    net = XLSTMUNet(1, 3, img_size=32, feature_size=4, **TINY)
    with pytest.raises(ValueError, match="missing"):
        load_pretrained_encoder(net, tmp_path / "encoder.pt")
    report = load_pretrained_encoder(net, tmp_path / "encoder.pt", strict=False)
    assert report.missing and all(k.startswith("blocks.1.") for k in report.missing)


def test_missing_file_and_foreign_checkpoint(tmp_path):
    net = XLSTMUNet(1, 3, img_size=32, feature_size=4, **TINY)
    with pytest.raises(CheckpointError, match="nope.pt: no such file"):
        load_pretrained_encoder(net, tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="no XLSTMEncoder weights"):
        load_pretrained_encoder(net, {"conv.weight": torch.zeros(1)})


def test_discriminative_fine_tuning_slows_the_pretrained_body_only():
    net = XLSTMUNet(1, 3, img_size=32, feature_size=4, **TINY)
    assert list(fine_tuning_param_groups(net, 1e-2, 1.0)) == list(net.parameters())  # one group, as before
    head, body = fine_tuning_param_groups(net, 1e-2, 0.1)
    assert head["lr"] == 1e-2 and body["lr"] == pytest.approx(1e-3)
    head_ids = {id(p) for p in net.decoder.out.parameters()}
    assert {id(p) for p in head["params"]} == head_ids
    assert len(head["params"]) + len(body["params"]) == len(list(net.parameters()))
    assert not head_ids & {id(p) for p in body["params"]}


def test_deep_supervision_heads_are_new_layers_at_the_full_rate():
    net = XLSTMUNet(1, 3, img_size=32, feature_size=4, deep_supervision=2, **TINY)
    head, body = fine_tuning_param_groups(net, 1e-2, 0.1)
    new_layers = [net.decoder.out, *net.decoder.deep_supervision_heads]
    assert {id(p) for p in head["params"]} == {id(p) for layer in new_layers for p in layer.parameters()}
    assert len(head["params"]) + len(body["params"]) == len(list(net.parameters()))
