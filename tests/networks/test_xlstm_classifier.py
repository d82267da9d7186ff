from __future__ import annotations

import pytest
import torch

from xlstm_monai.networks import XLSTMClassifier
from xlstm_monai.presets import TINY


@pytest.mark.parametrize("pooling", ["cls", "avg", "cls_avg"])
@pytest.mark.parametrize("spatial", [(32, 32, 32), (48, 32, 40)])
def test_output_shapes(pooling, spatial):
    net = XLSTMClassifier(1, 3, img_size=32, pooling=pooling, **TINY).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 1, *spatial)).shape == (2, 3)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="max"):
        XLSTMClassifier(1, 2, pooling="max", **TINY)
    with pytest.raises(ValueError, match="num_cls_tokens >= 1"):
        XLSTMClassifier(1, 2, pooling="cls", num_cls_tokens=0, **TINY)
    with pytest.raises(ValueError, match="expected 1 input channel"):
        XLSTMClassifier(1, 2, img_size=32, **TINY)(torch.randn(1, 2, 32, 32, 32))


@pytest.mark.parametrize("pooling", ["cls", "avg", "cls_avg"])
def test_gradients_reach_every_parameter(pooling):
    torch.manual_seed(0)
    net = XLSTMClassifier(1, 2, img_size=32, pooling=pooling, **TINY)
    loss = torch.nn.functional.cross_entropy(net(torch.randn(3, 1, 32, 32, 32)), torch.tensor([0, 1, 1]))
    loss.backward()
    assert [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []


def test_learns_a_separable_toy_problem():
    """Bright vs dark volumes: a few steps of AdamW drive the loss down."""
    torch.manual_seed(0)
    net = XLSTMClassifier(1, 2, img_size=16, patch_size=8, **TINY)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.cat([torch.randn(4, 1, 16, 16, 16) - 1, torch.randn(4, 1, 16, 16, 16) + 1])
    y = torch.tensor([0] * 4 + [1] * 4)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
