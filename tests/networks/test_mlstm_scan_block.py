from __future__ import annotations

import pytest
import torch

from xlstm_monai.networks import XLSTMEncoder, XLSTMUNet
from xlstm_monai.networks.blocks import MLSTMScanBlock, ScanDirection
from xlstm_monai.presets import TINY


def _block(**kwargs) -> MLSTMScanBlock:
    torch.manual_seed(0)
    return MLSTMScanBlock(32, 2, fast_axis=2, direction=ScanDirection.FORWARD, num_blocks=2, **kwargs).eval()


def _first_token_response(block: MLSTMScanBlock) -> float:
    """How much the first token of the scan changes when its successor along the scan changes."""
    grid = torch.randn(1, 4, 4, 4, 32)
    moved = grid.clone()
    moved[0, 0, 0, 1] += 3.0  # the second token of the forward scan along the last axis
    with torch.no_grad():
        a, _ = block(grid, grid.new_zeros(1, 0, 32))
        b, _ = block(moved, grid.new_zeros(1, 0, 32))
    return float((a[0, 0, 0, 0] - b[0, 0, 0, 0]).abs().max())


def test_the_causal_block_reads_only_earlier_tokens():
    assert _first_token_response(_block()) < 1e-6


def test_the_qk_convolution_lets_a_token_read_its_neighbours():
    """Its key is computed from a 3^3 neighbourhood, so the first scanned token sees the one after it."""
    assert _first_token_response(_block(qk_conv_kernel_size=3)) > 1e-4


def test_the_qk_path_is_the_library_layer_when_q_and_k_read_the_same_input():
    block = _block(qk_conv_kernel_size=3)
    x = torch.randn(2, 20, 32)
    with torch.no_grad():
        expected, _ = block.mlstm_layer(x)
        torch.testing.assert_close(block._mlstm_conv_qk(x, x), expected)


def test_layer_scale_zero_makes_the_block_the_identity():
    block = _block(layer_scale_init=0.0)
    grid, cls_tokens = torch.randn(2, 4, 4, 4, 32), torch.randn(2, 1, 32)
    out, out_cls = block(grid, cls_tokens)
    assert torch.equal(out, grid) and torch.equal(out_cls, cls_tokens)
    # the scales are learned: a step moves them off zero
    (out.square().sum() + out_cls.square().sum()).backward()
    assert block.layer_scale_mlstm.grad.abs().max() > 0


def test_bad_qk_conv_kernel_size_raises():
    with pytest.raises(ValueError, match="qk_conv_kernel_size"):
        _block(qk_conv_kernel_size=2)


def test_the_options_are_part_of_the_encoder_architecture():
    net = XLSTMEncoder(img_size=32, qk_conv_kernel_size=3, layer_scale_init=1e-5, **TINY)
    assert net.hyper_parameters()["qk_conv_kernel_size"] == 3 and net.hyper_parameters()["layer_scale"]
    keys = set(net.state_dict())
    assert {"blocks.0.qk_conv.weight", "blocks.0.layer_scale_mlstm", "blocks.1.layer_scale_ffn"} <= keys


def test_xlstm_unet_with_both_options_trains():
    torch.manual_seed(0)
    net = XLSTMUNet(1, 3, img_size=32, feature_size=4, qk_conv_kernel_size=3, layer_scale_init=1e-5, **TINY)
    x, y = torch.randn(2, 1, 32, 32, 32), torch.randint(0, 3, (2, 32, 32, 32))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert net(x).shape == (2, 3, 32, 32, 32)
    assert losses[-1] < losses[0]
