from __future__ import annotations

import pytest
import torch

from xlstm_monai.networks import XLSTMUNet
from xlstm_monai.presets import TINY


@pytest.mark.parametrize(
    "kwargs, spatial",
    [
        ({"patch_size": 8}, (32, 32, 32)),
        ({"patch_size": 8}, (64, 80, 48)),
        ({"patch_size": 4}, (16, 24, 20)),
        ({"patch_size": 16}, (32, 48, 32)),
    ],
)
def test_output_shapes(kwargs, spatial):
    net = XLSTMUNet(in_channels=2, out_channels=5, img_size=32, feature_size=4, **TINY, **kwargs).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 2, *spatial))
    assert out.shape == (2, 5, *spatial)


def test_default_network_shape_and_size():
    """The default is in the tens of millions of parameters and handles a non-cubic input."""
    net = XLSTMUNet(in_channels=1, out_channels=8).eval()
    assert 20e6 < sum(p.numel() for p in net.parameters()) < 80e6
    with torch.no_grad():
        assert net(torch.randn(1, 1, 64, 80, 48)).shape == (1, 8, 64, 80, 48)


@pytest.mark.parametrize(
    "shape, message",
    [((1, 1, 36, 32, 32), "not a multiple of the patch size"), ((1, 2, 32, 32, 32), "expected 1 input channel")],
)
def test_bad_input_raises(shape, message):
    net = XLSTMUNet(1, 3, img_size=32, feature_size=4, **TINY)
    with pytest.raises(ValueError, match=message):
        net(torch.randn(*shape))


@pytest.mark.parametrize("patch_size", [6, 2, (8, 8, 4)])
def test_bad_patch_size_raises(patch_size):
    with pytest.raises(ValueError, match="patch_size"):
        XLSTMUNet(1, 3, img_size=48, patch_size=patch_size, **TINY)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = XLSTMUNet(1, 3, img_size=32, feature_size=4, **TINY)
    net(torch.randn(2, 1, 32, 32, 32)).square().mean().backward()
    no_grad = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


def test_trace_at_fixed_roi_matches_eager():
    """torch.jit.script cannot compile xlstm's layers; a trace at the sliding-window ROI is exact there."""
    torch.manual_seed(0)
    net = XLSTMUNet(1, 3, img_size=32, feature_size=4, **TINY).eval()
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        traced = torch.jit.trace(net, x, check_trace=False)
        torch.testing.assert_close(traced(x), net(x), rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA for the Triton kernels")
def test_triton_network_matches_cpu_network():
    torch.manual_seed(0)
    net = XLSTMUNet(1, 3, img_size=64, feature_size=8, embed_dim=96, depth=4, num_heads=2).eval()
    x = torch.randn(1, 1, 64, 64, 64)
    with torch.no_grad():
        ref = net(x)
        net.cuda()
        out_fp32 = net(x.cuda()).cpu()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out_bf16 = net(x.cuda()).float().cpu()
    torch.testing.assert_close(out_fp32, ref, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(out_bf16, ref, rtol=0.1, atol=0.1)


def test_the_ablation_without_mlstm_blocks_keeps_everything_else():
    """token_mixer='none': the same conv path, token skips and decoder; only the mLSTM parameters are gone."""
    torch.manual_seed(0)
    full = XLSTMUNet(1, 3, img_size=32, feature_size=4, **TINY)
    ablated = XLSTMUNet(1, 3, img_size=32, feature_size=4, token_mixer="none", **TINY)
    kept = {k for k in full.state_dict() if not k.startswith("encoder.blocks.")}
    assert set(ablated.state_dict()) == kept
    x = torch.randn(1, 1, 32, 32, 32)
    tokens = ablated.encoder(x)
    embedded, _ = ablated.encoder.embed(x)
    torch.testing.assert_close(tokens.hidden_states[0].flatten(2).transpose(1, 2), embedded)  # blocks pass through
    assert ablated(x).shape == full(x).shape == (1, 3, 32, 32, 32)


def test_deep_supervision_adds_coarser_predictions_in_training_only():
    """Training returns the full-resolution logits first, then the 1/2 and 1/4 stages; eval returns one tensor."""
    torch.manual_seed(0)
    net = XLSTMUNet(1, 3, img_size=32, feature_size=4, deep_supervision=2, **TINY)
    x = torch.randn(2, 1, 32, 48, 32)
    outputs = net.train()(x)
    assert [tuple(o.shape) for o in outputs] == [(2, 3, 32, 48, 32), (2, 3, 16, 24, 16), (2, 3, 8, 12, 8)]
    with torch.no_grad():
        single = net.eval()(x)
    assert torch.is_tensor(single) and single.shape == (2, 3, 32, 48, 32)


def test_deep_supervision_trains_every_head_through_monais_loss():
    from monai.losses import DeepSupervisionLoss, DiceCELoss

    torch.manual_seed(0)
    net = XLSTMUNet(1, 3, img_size=32, feature_size=4, deep_supervision=2, **TINY).train()
    label = torch.randint(0, 3, (2, 1, 32, 32, 32)).float()
    loss = DeepSupervisionLoss(DiceCELoss(to_onehot_y=True, softmax=True), weight_mode="exp")
    loss(net(torch.randn(2, 1, 32, 32, 32)), label).backward()
    heads = [n for n, p in net.named_parameters() if n.startswith("decoder.deep_supervision_heads")]
    assert len(heads) == 4  # a 1x1x1 convolution's weight and bias per head
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in net.named_parameters() if n in heads)


@pytest.mark.parametrize("levels", [-1, 3])
def test_deep_supervision_beyond_the_decoder_raises(levels):
    with pytest.raises(ValueError, match="deep_supervision should be between 0 and 2"):
        XLSTMUNet(1, 3, img_size=32, feature_size=4, deep_supervision=levels, **TINY)


def test_full_resolution_output_picks_the_first_of_a_list():
    from xlstm_monai.networks import full_resolution_output

    fine, coarse = torch.zeros(3, 8, 8, 8), torch.ones(3, 4, 4, 4)
    assert full_resolution_output([fine, coarse]) is fine
    assert full_resolution_output(coarse) is coarse


def test_a_deeply_supervised_model_loads_into_the_network_without_heads():
    """Inference configs build the network without the training-only heads; the checkpoint loads strictly."""
    torch.manual_seed(0)
    trained = XLSTMUNet(1, 3, img_size=32, feature_size=4, deep_supervision=2, **TINY).eval()
    plain = XLSTMUNet(1, 3, img_size=32, feature_size=4, **TINY).eval()
    plain.load_state_dict(trained.state_dict())
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), trained(x))
    with pytest.raises(RuntimeError, match="deep_supervision_heads"):  # heads the checkpoint lacks are still missing
        trained.load_state_dict(plain.state_dict())


def test_single_full_resolution_stage_changes_only_the_blocks_at_input_resolution():
    """ "single" keeps every coarser stage (and the encoder) key for key; at full resolution it runs two 3^3
    convolutions instead of UNETR's four plus two 1^3, and it trains end to end."""
    torch.manual_seed(0)
    residual = XLSTMUNet(1, 3, img_size=32, feature_size=4, **TINY)
    single = XLSTMUNet(1, 3, img_size=32, feature_size=4, full_resolution="single", **TINY)
    full_res = ("decoder.conv_path.0.", "decoder.decoders.0.")
    outside = {k: v.shape for k, v in single.state_dict().items() if not k.startswith(full_res)}
    assert outside == {k: v.shape for k, v in residual.state_dict().items() if not k.startswith(full_res)}

    def convs_3x3(net):
        return sum(
            1
            for n, m in net.named_modules()
            if n.startswith(full_res[0][:-1]) or n.startswith(full_res[1][:-1])
            if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)) and m.kernel_size == (3, 3, 3)
        )

    assert (convs_3x3(residual), convs_3x3(single)) == (4, 2)
    single(torch.randn(2, 1, 32, 32, 32)).square().mean().backward()
    assert [n for n, p in single.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []


def test_narrow_full_resolution_stage_halves_its_channels_and_keeps_the_coarser_stages():
    """ "narrow" keeps the encoder and every stage below input resolution key for key; at input resolution it runs
    feature_size // 2 channels with one 3^3 convolution on the image side, and it trains end to end."""
    torch.manual_seed(0)
    residual = XLSTMUNet(1, 3, img_size=32, feature_size=4, **TINY)
    narrow = XLSTMUNet(1, 3, img_size=32, feature_size=4, full_resolution="narrow", **TINY)
    full_res = ("decoder.conv_path.0.", "decoder.decoders.0.", "decoder.out.", "decoder.conv_path.1.")
    outside = {k: v.shape for k, v in narrow.state_dict().items() if not k.startswith(full_res)}
    assert outside == {k: v.shape for k, v in residual.state_dict().items() if not k.startswith(full_res)}
    assert narrow.decoder.out.conv.conv.in_channels == 2 and narrow.decoder.conv_path[0].conv.out_channels == 2
    assert narrow.decoder.conv_path[1].layer.conv1.conv.in_channels == 2  # the next stage reads the narrow one
    out = narrow(torch.randn(2, 1, 32, 32, 32))
    assert out.shape == (2, 3, 32, 32, 32)
    out.square().mean().backward()
    assert [n for n, p in narrow.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []
    with pytest.raises(ValueError, match="narrow"):
        XLSTMUNet(1, 3, img_size=32, feature_size=1, full_resolution="narrow", **TINY)


def test_unknown_full_resolution_stage_raises():
    with pytest.raises(ValueError, match="full_resolution"):
        XLSTMUNet(1, 3, img_size=32, feature_size=4, full_resolution="light", **TINY)
