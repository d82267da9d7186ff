"""Sparse restoration: the U-Net's convolutional path computes at visible voxels only and fills masked ones with
learned stage tokens during pretraining, and leaves the network as it was outside it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xlstm_monai.networks import XLSTMEncoder, XLSTMUNet, load_pretrained
from xlstm_monai.ssl import StudentTeacher, StudentTeacherLoss, export_teacher_encoder, random_token_mask
from xlstm_monai.ssl.model import token_mask_to_voxels
from xlstm_monai.ssl.sparse import StageMaskTokens, sparse_convolutions

SMALL = {"img_size": 32, "feature_size": 4, "embed_dim": 24, "depth": 2, "num_heads": 2, "patch_size": 8}


def _unet(**settings) -> XLSTMUNet:
    torch.manual_seed(0)
    return XLSTMUNet(1, 1, num_cls_tokens=1, mask_token=True, **{**SMALL, **settings})


def _masked_image(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A (2, 1, 32, 32, 32) image blanked at half its 8^3 blocks, and its visibility."""
    generator = torch.Generator().manual_seed(seed)
    masks = random_token_mask(2, 64, 0.5)
    visible = ~token_mask_to_voxels(masks, (4, 4, 4), (8, 8, 8))
    return torch.rand(2, 1, 32, 32, 32, generator=generator) * visible, visible


def _stage_outputs(unet: XLSTMUNet, image: torch.Tensor) -> list[torch.Tensor]:
    outputs: list[torch.Tensor] = []
    handles = [s.register_forward_hook(lambda m, i, o: outputs.append(o.detach())) for s in unet.decoder.conv_path]
    unet.decoder(image, unet.encoder(image))
    for handle in handles:
        handle.remove()
    return outputs


def test_masked_positions_of_every_stage_hold_that_stages_token_and_norms_see_visible_voxels_only():
    unet = _unet()
    image, visible = _masked_image()
    channels = [4, 8, 16]  # feature_size 4, doubled at each of the three stages of 8^3 patches
    tokens = StageMaskTokens(channels)
    normalised: list[tuple[torch.Tensor, torch.Tensor]] = []
    first_norm = next(m for m in unet.decoder.conv_path.modules() if isinstance(m, nn.InstanceNorm3d))
    with sparse_convolutions(unet.decoder.conv_path, visible, tokens):
        capture = first_norm.register_forward_hook(
            lambda m, i, o: normalised.append(o.detach().clone())
        )  # after the context's
        outputs = _stage_outputs(unet, image)
    capture.remove()
    for stage, (output, token) in enumerate(zip(outputs, tokens.tokens)):
        factor = 2**stage
        seen = visible[:, :, ::factor, ::factor, ::factor].expand_as(output)
        expected = token.detach().view(1, -1, 1, 1, 1).expand_as(output)
        torch.testing.assert_close(output[~seen], expected[~seen])
        assert output[seen].std() > 0.1  # the visible voxels carry the image, not the token
    # the first instance norm's statistics are the visible voxels': mean 0 and variance 1 there, zero elsewhere
    normed, seen = normalised[0], visible.expand_as(normalised[0])
    per_channel = [normed[b, c][seen[b, c]] for b in range(2) for c in range(normed.shape[1])]
    assert max(abs(v.mean().item()) for v in per_channel) < 1e-4
    assert max(abs(v.var(unbiased=False).item() - 1.0) for v in per_channel) < 1e-2
    assert (normed[~seen] == 0).all()


def test_visible_features_do_not_depend_on_how_much_is_masked_elsewhere():
    """Dense convolutions on a blanked image shift every voxel's normalised activation with the masked share (the
    zeros enter the instance statistics); sparse ones give the same visible activations up to the masks' borders."""
    unet = _unet()
    image = torch.rand(1, 1, 32, 32, 32)
    little = torch.ones(1, 1, 32, 32, 32, dtype=torch.bool)
    little[..., :8, :8, :8] = False  # one block masked
    much = little.clone()
    much[..., 16:, :, :] = False  # half of the volume masked as well
    far = (slice(None), slice(None), slice(0, 8), slice(16, 32), slice(16, 32))  # visible, far from both masks

    def first_stage(visible, sparse: bool):
        if not sparse:
            return _stage_outputs(unet, image * visible)[0]
        with sparse_convolutions(unet.decoder.conv_path, visible):
            return _stage_outputs(unet, image * visible)[0]

    dense_shift = (first_stage(little, False)[far] - first_stage(much, False)[far]).abs().max()
    sparse_shift = (first_stage(little, True)[far] - first_stage(much, True)[far]).abs().max()
    assert dense_shift > 0.05
    assert sparse_shift < 0.3 * dense_shift  # only the visible voxels' own statistics differ


def test_the_hooks_leave_with_the_context():
    unet = _unet().eval()
    image, visible = _masked_image()
    before = unet(image)
    with sparse_convolutions(unet.decoder.conv_path, visible, StageMaskTokens([4, 8, 16])):
        inside = unet(image)
    assert not torch.allclose(before, inside)
    torch.testing.assert_close(unet(image), before)
    assert not any(m._forward_hooks for m in unet.modules())


def test_a_sparse_student_trains_its_stage_tokens_and_exports_a_plain_unet(tmp_path):
    model = StudentTeacher(
        _unet(), out_dim=16, patch_out_dim=16, hidden_dim=16, bottleneck_dim=8, sparse_restoration=True
    )
    loss = StudentTeacherLoss(16, 16, global_weight=0.0)
    views = torch.rand(2, 1, 32, 32, 32)
    masks = random_token_mask(2, 64, 0.5)
    losses = loss(model(views, None, masks), views, 2, 0.04)
    losses["loss"].backward()
    tokens = model.student["stage_mask_tokens"].tokens
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in tokens)
    assert torch.isfinite(losses["loss_recon"])

    checkpoint = tmp_path / "last.pt"
    torch.save({"model": model.state_dict()}, checkpoint)
    export = export_teacher_encoder(model, str(checkpoint), str(tmp_path / "pretrained.pt"))
    assert not any("stage_mask_tokens" in k for k in torch.load(export, weights_only=True)["state_dict"])
    fine_tune = XLSTMUNet(1, 3, **SMALL)
    report = load_pretrained(fine_tune, export)
    assert report.missing == [] and report.mismatched == [] and report.unexpected == ["cls_token", "mask_token"]
    assert report.decoder_loaded and all(k.startswith("out.") for k in report.decoder_skipped)


def test_sparse_restoration_needs_a_unet_and_instance_norms():
    encoder = XLSTMEncoder(img_size=16, embed_dim=24, depth=2, num_heads=2, num_cls_tokens=1, mask_token=True)
    with pytest.raises(ValueError, match="needs an XLSTMUNet"):
        StudentTeacher(encoder, out_dim=16, patch_out_dim=16, sparse_restoration=True)
    unet = _unet(norm_name="batch")
    image, visible = _masked_image()
    with pytest.raises(ValueError, match="instance norms only, found BatchNorm3d"):
        with sparse_convolutions(unet.decoder.conv_path, visible):
            unet(image)
