"""The per-part profile of XLSTMUNet: every part is timed, nested parts lie within theirs, parts add up to less than
the whole, and the table prints every part."""

from __future__ import annotations

import torch

from xlstm_monai.bench.profile import INSIDE, PARTS, PartTimer, format_profile, profile_network
from xlstm_monai.networks import XLSTMUNet


def _small() -> XLSTMUNet:
    torch.manual_seed(0)
    return XLSTMUNet(in_channels=1, out_channels=3, img_size=32, embed_dim=48, depth=2, num_heads=2, feature_size=4)


def test_every_part_is_timed_and_parts_add_up_to_less_than_the_step():
    result = profile_network(_small(), infer_size=32, train_size=32, out_channels=3, warmup=0, repeats=1)
    for part in PARTS:
        assert result["infer_parts"][part] > 0, part
        assert result["train_forward_parts"][part] > 0, part
    for part, outer in INSIDE.items():
        assert result["infer_parts"][part] <= result["infer_parts"][outer]
        assert result["train_parts"][part] <= result["train_parts"][outer]
    beside = [p for p in PARTS if p not in INSIDE]
    assert sum(result["infer_parts"][p] for p in beside) <= result["infer_seconds"]
    assert sum(result["train_parts"][p] for p in beside) <= result["train_seconds"]
    assert result["train_backward_parts"]["decoder"] > 0  # the backward is seen through the hooks
    table = format_profile(
        {"networks": {"XLSTMUNet": result}, "settings": {"infer_size": 32, "train_size": 32, "threads": 1}}
    )
    assert all(part in table for part in [*PARTS, "other"])


def test_hooks_leave_the_output_unchanged_and_are_removed():
    network = _small().eval()
    image = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        reference = network(image)
        timer = PartTimer(network)
        hooked = network(image)
        assert timer.forward["decoder"] > 0
        timer.remove()
        timer.reset()
        network(image)
    assert torch.equal(reference, hooked) and not timer.forward


def test_profiling_a_network_that_is_not_an_xlstmunet_of_the_benchmark_is_refused(tmp_path):
    import pytest

    from xlstm_monai.bench.profile import benchmark_profile

    for name in ("UNet", "XLSTMUNet-nosuch"):
        with pytest.raises(ValueError, match="XLSTMUNet-foundation-single"):
            benchmark_profile(network=name, output=str(tmp_path / "p.json"))
