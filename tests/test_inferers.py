"""Test-time mirroring: the mean of the network's logits over the image and its mirror images, each mapped back."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import SlidingWindowInferer

from xlstm_monai.inferers import MirroredSlidingWindowInferer

WINDOW = {"roi_size": (8, 8, 8), "sw_batch_size": 2, "overlap": 0.25, "mode": "gaussian"}


def _lopsided_network() -> torch.nn.Module:
    """A convolution with a random kernel: not symmetric under any flip, so mirroring changes its output."""
    torch.manual_seed(0)
    return torch.nn.Conv3d(1, 2, 3, padding=1).eval()


def test_the_mean_over_the_image_and_its_mirror_along_one_axis():
    net, x = _lopsided_network(), torch.randn(1, 1, 16, 12, 8)
    window = SlidingWindowInferer(**WINDOW)
    with torch.no_grad():
        mirrored = MirroredSlidingWindowInferer(**WINDOW, mirror_axes=[0])(x, net)
        by_hand = (window(x, net) + window(x.flip(2), net).flip(2)) / 2
        assert torch.allclose(mirrored, by_hand, atol=1e-5)
        assert not torch.allclose(mirrored, window(x, net), atol=1e-3)  # the mirror pass did count


def test_every_subset_of_the_axes_is_a_pass():
    net, x = _lopsided_network(), torch.randn(1, 1, 8, 10, 12)
    window = SlidingWindowInferer(**WINDOW)
    with torch.no_grad():
        mirrored = MirroredSlidingWindowInferer(**WINDOW, mirror_axes=(0, 2))(x, net)
        flips = [(2,), (4,), (2, 4)]
        by_hand = (window(x, net) + sum(window(x.flip(d), net).flip(d) for d in flips)) / 4
    assert torch.allclose(mirrored, by_hand, atol=1e-5)


def test_no_axes_is_the_sliding_window_inferer_and_its_settings_stay_visible():
    """MONAI Label logs an inferer's attributes: the window's overlap must be among them."""
    net, x = _lopsided_network(), torch.randn(1, 1, 16, 16, 16)
    plain = MirroredSlidingWindowInferer(**WINDOW)
    with torch.no_grad():
        assert torch.equal(plain(x, net), SlidingWindowInferer(**WINDOW)(x, net))
    assert plain.__dict__["overlap"] == 0.25 and plain.__dict__["mirror_axes"] == ()


@pytest.mark.parametrize("axes, message", [((0, 0), "distinct"), ((-1,), "distinct non-negative"), ((3,), "beyond")])
def test_bad_axes_raise(axes, message):
    net, x = _lopsided_network(), torch.randn(1, 1, 8, 8, 8)
    with pytest.raises(ValueError, match=message):
        MirroredSlidingWindowInferer(**WINDOW, mirror_axes=axes)(x, net)
