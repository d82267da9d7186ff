from __future__ import annotations

import pytest
import torch

from xlstm_monai.networks import XLSTMEncoder
from xlstm_monai.presets import TINY


@pytest.mark.parametrize("spatial", [(32, 32, 32), (32, 40, 24)])
def test_output_shapes(spatial):
    net = XLSTMEncoder(in_channels=2, img_size=32, num_cls_tokens=2, out_indices=(0, 1), **TINY).eval()
    grid = tuple(s // 8 for s in spatial)
    with torch.no_grad():
        out = net(torch.randn(3, 2, *spatial))
    assert out.cls_tokens.shape == (3, 2, 48)
    assert out.tokens.shape == (3, grid[0] * grid[1] * grid[2], 48)
    assert [h.shape for h in out.hidden_states] == [(3, 48, *grid)] * 2


def test_default_out_indices_are_quarter_ends():
    assert XLSTMEncoder(depth=12, embed_dim=48, num_heads=2).out_indices == (2, 5, 8, 11)


def test_position_embedding_resizes_to_any_grid():
    net = XLSTMEncoder(img_size=32, **TINY)
    assert net.position_embedding([4, 4, 4]).shape == (1, 64, 48)
    assert net.position_embedding([6, 2, 3]).shape == (1, 36, 48)
    torch.testing.assert_close(net.position_embedding([4, 4, 4]), net.pos_embed.flatten(2).transpose(1, 2))


@pytest.mark.parametrize(
    "shape, message",
    [
        ((1, 1, 30, 32, 32), "not a multiple of the patch size"),
        ((1, 1, 4, 32, 32), "not a multiple of the patch size"),
        ((1, 3, 32, 32, 32), "expected 1 input channel"),
        ((1, 1, 32, 32), r"expected a \(B, C, H, W, D\) tensor"),
    ],
)
def test_bad_input_raises(shape, message):
    net = XLSTMEncoder(img_size=32, **TINY)
    with pytest.raises(ValueError, match=message):
        net(torch.randn(*shape))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"embed_dim": 50, "num_heads": 2}, "divisible by 2 \\* num_heads"),
        ({"img_size": 30}, "multiple of patch_size"),
        ({"dropout_path_rate": 1.5}, "between 0 and 1"),
        ({"spatial_dims": 1}, "spatial_dims"),
        ({"out_indices": (5,)}, "out_indices"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    args = {**TINY, "img_size": 32, **kwargs}
    with pytest.raises(ValueError, match=message):
        XLSTMEncoder(**args)


def test_mask_substitutes_exactly_the_masked_tokens():
    torch.manual_seed(0)
    net = XLSTMEncoder(img_size=32, mask_token=True, **TINY).eval()
    x = torch.randn(2, 1, 32, 32, 32)
    mask = torch.zeros(2, 64, dtype=torch.bool)
    mask[0, [0, 5, 63]] = True
    mask[1, 10:20] = True
    plain, _ = net.embed(x)
    masked, _ = net.embed(x, mask)
    pos = net.position_embedding([4, 4, 4])[0]
    torch.testing.assert_close(masked[mask], (net.mask_token[0, 0] + pos.expand(2, -1, -1)[mask]))
    torch.testing.assert_close(masked[~mask], plain[~mask])
    # grid-shaped masks are accepted too, and a mask of all False changes nothing
    torch.testing.assert_close(net(x, mask.reshape(2, 4, 4, 4)).tokens, net(x, mask).tokens)
    torch.testing.assert_close(net(x, torch.zeros_like(mask)).tokens, net(x).tokens)


def test_mask_needs_mask_token_and_right_shape():
    x = torch.randn(1, 1, 32, 32, 32)
    with pytest.raises(ValueError, match="mask_token=False"):
        XLSTMEncoder(img_size=32, **TINY)(x, torch.zeros(1, 64, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool tensor of shape"):
        XLSTMEncoder(img_size=32, mask_token=True, **TINY)(x, torch.zeros(1, 63, dtype=torch.bool))


def test_every_token_sees_the_whole_volume_after_two_blocks():
    """Forward then reverse scans: a change at one position reaches every token and the class token."""
    torch.manual_seed(0)
    net = XLSTMEncoder(img_size=32, **TINY).eval()
    x = torch.randn(1, 1, 32, 32, 32)
    y = x.clone()
    y[..., 16:24, 16:24, 16:24] += 1.0  # one patch in the middle
    with torch.no_grad():
        a, b = net(x), net(y)
    assert ((a.tokens - b.tokens).abs().amax(-1) > 1e-6).all()
    assert (a.cls_tokens - b.cls_tokens).abs().max() > 1e-6


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    net = XLSTMEncoder(img_size=32, **TINY)
    x = torch.randn(1, 1, 32, 32, 32)
    grads = []
    for use_checkpoint in (False, True):
        net.zero_grad()
        net.use_checkpoint = use_checkpoint
        net(x).tokens.square().mean().backward()
        grads.append(net.patch_embed.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
