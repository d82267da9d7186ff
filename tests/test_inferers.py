"""Test-time mirroring: the mean of the network's logits over the image and its mirror images, each mapped back."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import SimpleInferer, SlidingWindowInferer

from xlstm_monai.inferers import MirroredInferer


def _lopsided_network() -> torch.nn.Module:
    """A convolution with a random kernel: not symmetric under any flip, so mirroring changes its output."""
    torch.manual_seed(0)
    return torch.nn.Conv3d(1, 2, 3, padding=1).eval()


def test_the_mean_over_the_image_and_its_mirror_along_one_axis():
    net, x = _lopsided_network(), torch.randn(1, 1, 8, 10, 12)
    with torch.no_grad():
        mirrored = MirroredInferer(SimpleInferer(), spatial_axes=[0])(x, net)
        by_hand = (net(x) + net(x.flip(2)).flip(2)) / 2
        assert torch.allclose(mirrored, by_hand, atol=1e-6)
        assert not torch.allclose(mirrored, net(x), atol=1e-3)  # the mirror pass did count


def test_every_subset_of_the_axes_is_a_pass():
    net, x = _lopsided_network(), torch.randn(1, 1, 8, 10, 12)
    with torch.no_grad():
        mirrored = MirroredInferer(SimpleInferer(), spatial_axes=(0, 2))(x, net)
        flips = [(), (2,), (4,), (2, 4)]
        by_hand = sum(net(x.flip(d) if d else x).flip(d) if d else net(x) for d in flips) / 4
    assert torch.allclose(mirrored, by_hand, atol=1e-6)


def test_no_axes_is_the_wrapped_inferer_and_sliding_windows_wrap_unchanged():
    net, x = _lopsided_network(), torch.randn(1, 1, 16, 16, 16)
    window = SlidingWindowInferer(roi_size=(8, 8, 8), sw_batch_size=2, overlap=0.25, mode="gaussian")
    with torch.no_grad():
        assert torch.equal(MirroredInferer(window, spatial_axes=[])(x, net), window(x, net))
        mirrored = MirroredInferer(window, spatial_axes=[1])(x, net)
        assert torch.allclose(mirrored, (window(x, net) + window(x.flip(3), net).flip(3)) / 2, atol=1e-5)


@pytest.mark.parametrize("axes, message", [((0, 0), "distinct"), ((-1,), "distinct non-negative"), ((3,), "beyond")])
def test_bad_axes_raise(axes, message):
    net, x = _lopsided_network(), torch.randn(1, 1, 8, 8, 8)
    with pytest.raises(ValueError, match=message):
        MirroredInferer(SimpleInferer(), spatial_axes=axes)(x, net)
