"""pretrain_ssl: losses that fall, an EMA-only teacher, collapse detection, and an export every bundle loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Events

from tests.bundles.helpers import load_yaml, run_workflow
from xlstm_monai.networks import XLSTMClassifier, XLSTMEncoder, XLSTMUNet, load_pretrained_encoder
from xlstm_monai.presets import TINY, overrides
from xlstm_monai.ssl import (
    StudentTeacher,
    StudentTeacherLoss,
    StudentTeacherTrainer,
    TrainingCollapsedError,
    random_token_mask,
)

TINY_ENCODER = overrides(TINY, prefix="encoder_def")
# the block setting of the bundles' encoder that TINY leaves at the bundles' value: downstream networks share it
BLOCKS = {"qk_conv_kernel_size": load_yaml("pretrain_ssl", "train.yaml")["encoder_def"]["qk_conv_kernel_size"]}
FAST = {
    **TINY_ENCODER,
    "num_phantoms": 6,
    "global_size": [32, 32, 32],
    "local_size": [16, 16, 16],
    "spacing": [4.5, 4.5, 4.5],
    "num_local": 2,
    "out_dim": 128,
    "patch_out_dim": 128,
    "network_def#hidden_dim": 128,
    "network_def#bottleneck_dim": 32,
    "num_workers": 0,
    "learning_rate": 1.0e-3,
    "warmup_epochs": 1,
}


def _train(root, epochs, record=None, starts=None, **overrides):
    from monai.bundle import ConfigWorkflow

    from tests.bundles.helpers import config_path

    workflow = ConfigWorkflow(
        config_file=config_path("pretrain_ssl", "train.yaml"),
        meta_file=config_path("pretrain_ssl", "metadata.json"),
        logging_file=config_path("pretrain_ssl", "logging.conf"),
        workflow_type="train",
        bundle_root=str(root),
        epochs=epochs,
        **{**FAST, **overrides},
    )
    workflow.initialize()
    assert not workflow.check_properties()
    trainer = workflow.parser.get_parsed_content("train#trainer")
    if record is not None:
        trainer.add_event_handler(
            Events.ITERATION_COMPLETED, lambda e: record.append({k: float(v) for k, v in e.state.output.items()})
        )
    if starts is not None:
        trainer.add_event_handler(Events.STARTED, lambda e: starts.append((e.state.epoch, e.state.iteration)))
    workflow.run()
    workflow.finalize()
    return workflow


SCHEDULE = {"teacher_temp": [0.04, 0.04], "momentum": [0.99, 0.99]}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A short pretraining on 6 CT + 6 MRI phantoms with the teacher temperature held fixed: 4 epochs, then the same
    run resumed from its last.pt up to 7 epochs, then the export."""
    root = tmp_path_factory.mktemp("pretrain_ssl")
    history: list[dict] = []
    starts: list[tuple[int, int]] = []
    _train(root, epochs=4, record=history, starts=starts, **SCHEDULE)
    _train(root, epochs=7, record=history, starts=starts, **SCHEDULE)
    run_workflow("pretrain_ssl", ["train.yaml", "export.yaml"], "train", bundle_root=str(root), **FAST)
    return root, history, starts


@pytest.mark.slow
@pytest.mark.parametrize("term", ["loss_global", "loss_local", "loss_recon"])
def test_each_loss_is_finite_and_falls(pretrained, term):
    _, history, _ = pretrained
    values = np.array([h[term] for h in history])
    assert len(values) >= 40 and np.isfinite(values).all()
    assert values[-8:].mean() < values[:8].mean(), f"{term}: {values[:8].mean():.4f} -> {values[-8:].mean():.4f}"


@pytest.mark.slow
def test_export_loads_into_unet_and_classifier_with_zero_missing_keys(pretrained):
    root, _, _ = pretrained
    export = root / "models" / "pretrained.pt"
    assert (root / "models" / "pretrained.json").is_file()
    small = {**TINY, **BLOCKS}
    unet = load_pretrained_encoder(XLSTMUNet(1, 8, img_size=96, **small), export)
    classifier = load_pretrained_encoder(XLSTMClassifier(1, 2, img_size=64, **small), export)
    assert unet.missing == [] and unet.mismatched == [] and unet.unexpected == ["cls_token", "mask_token"]
    assert classifier.missing == [] and classifier.unexpected == ["mask_token"]
    with pytest.raises(ValueError, match="embed_dim: checkpoint 48 vs network 384"):
        load_pretrained_encoder(XLSTMUNet(1, 8), export)
    with pytest.raises(ValueError, match="qk_conv_kernel_size: checkpoint"):
        load_pretrained_encoder(XLSTMUNet(1, 8, img_size=96, **{**small, "qk_conv_kernel_size": 0}), export)


@pytest.mark.slow
def test_training_resumes_from_last_checkpoint(pretrained):
    """The second run continues the first: it starts at epoch 4 and its step count, and ends at 7 epochs."""
    root, history, starts = pretrained
    state = torch.load(root / "models" / "last.pt", weights_only=False)
    steps = state["trainer"]["epoch_length"]
    assert starts == [(0, 0), (4, 4 * steps)]
    assert state["trainer"]["iteration"] == 7 * steps == len(history)
    assert torch.count_nonzero(state["loss"]["center"]) > 0  # the teacher centre is part of the saved state


@pytest.mark.slow
def test_the_teacher_stays_informative(pretrained):
    """Losses also fall under collapse: the teacher's outputs must stay far from uniform and its class embeddings
    must differ between volumes, in every epoch."""
    _, history, _ = pretrained
    per_epoch = np.array([[h["teacher_entropy"], h["embedding_spread"]] for h in history]).reshape(7, -1, 2).mean(1)
    assert (per_epoch[:, 0] < 0.95).all(), per_epoch[:, 0]  # 1.0: uniform outputs (the centring won)
    assert (per_epoch[:, 1] > 5e-3).all(), per_epoch[:, 1]  # 0.0: every volume the same embedding


def _tiny_model():
    torch.manual_seed(0)
    encoder = XLSTMEncoder(img_size=16, embed_dim=24, depth=2, num_heads=2, mask_token=True)
    return StudentTeacher(encoder, out_dim=16, patch_out_dim=16, hidden_dim=16, bottleneck_dim=8)


def test_teacher_moves_only_by_ema():
    model = _tiny_model()
    assert not any(p.requires_grad for p in model.teacher.parameters())
    loss = StudentTeacherLoss(16, 16)
    batch = [{"global_views": torch.rand(2, 2, 1, 16, 16, 16), "local_views": torch.rand(2, 1, 1, 8, 8, 8)}]
    trainer = StudentTeacherTrainer(
        "cpu",
        1,
        batch,
        model,
        torch.optim.SGD(model.student.parameters(), lr=0.5),
        loss,
        momentum=(0.9, 0.9),
        clip_grad=0,
    )
    before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    trainer.run()
    students = dict(model.student.named_parameters())
    for name, teacher in model.teacher.named_parameters():
        assert teacher.grad is None
        expected = 0.9 * before[name] + 0.1 * students[name].detach()
        torch.testing.assert_close(teacher, expected)
    assert any(not torch.equal(before[n], p) for n, p in model.teacher.named_parameters())


def test_token_mask_has_the_exact_ratio():
    mask = random_token_mask(4, 64, 0.3)
    assert mask.dtype == torch.bool and mask.sum(1).tolist() == [19] * 4
    assert not torch.equal(mask[0], mask[1])
    with pytest.raises(ValueError, match="mask ratio"):
        random_token_mask(1, 8, 1.0)


def test_uniform_teacher_is_detected_as_collapse(tmp_path):
    """A teacher temperature of 100 makes the teacher's outputs uniform: training must stop, saying why."""
    with pytest.raises(Exception) as error:
        _train(tmp_path, epochs=5, teacher_temp=[100.0, 100.0], collapse_patience=1, num_phantoms=2)
    chain = [error.value]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    collapsed = [e for e in chain if isinstance(e, TrainingCollapsedError)]
    assert collapsed and "teacher outputs are uniform" in str(collapsed[0])
    assert "epoch 1" in str(collapsed[0])


def test_modality_weights_balance_batches():
    from xlstm_monai.data import modality_sampling_weights

    images = [{"modality": "CT"}] * 30 + [{"modality": "MRI"}] * 6
    weights = torch.tensor(modality_sampling_weights(images, {"CT": 0.5, "MRI": 0.5}))
    drawn = torch.multinomial(weights, 20000, replacement=True, generator=torch.Generator().manual_seed(0))
    assert abs((drawn >= 30).float().mean().item() - 0.5) < 0.02
    with pytest.raises(ValueError, match="no share"):
        modality_sampling_weights([{"modality": "PET"}], {"CT": 1.0})


def _held_out_volumes(folder) -> torch.Tensor:
    """16 phantoms the pretraining never saw (8 CT, 8 MRI), through the bundle's preprocessing, centre 32^3."""
    from monai.bundle import ConfigParser
    from monai.transforms import CenterSpatialCropd, Compose

    from tests.bundles.helpers import config_path
    from xlstm_monai.phantoms import write_heart_phantoms

    write_heart_phantoms(str(folder), 8, "ct", (64, 64, 64), (4.5, 4.5, 4.5), seed=500)
    write_heart_phantoms(str(folder), 8, "mr", (64, 64, 64), (4.5, 4.5, 4.5), seed=700)
    parser = ConfigParser()
    parser.read_config(config_path("pretrain_ssl", "train.yaml"))
    parser.update(FAST)
    preprocess = Compose(
        parser.get_parsed_content("train#deterministic_transforms") + [CenterSpatialCropd("image", 32)]
    )
    items = [
        {"image": str(f), "modality": "CT" if f.name.startswith("ct_") else "MRI"}
        for f in sorted(folder.glob("*_image.nii.gz"))
    ]
    return torch.stack([torch.as_tensor(preprocess(item)["image"]) for item in items])


@pytest.mark.slow
def test_a_probe_on_the_frozen_teacher_beats_the_same_probe_on_a_random_encoder(pretrained, tmp_path):
    """
    On phantoms the pretraining never saw, half the patches are masked and a ridge regression on the frozen encoder's
    token at each masked position predicts the patch's intensity mean and spread from its context (train on 10
    volumes, score R^2 on 6). The pretrained teacher must explain far more than a random encoder of the same shape.
    """
    from xlstm_monai.ssl import patchify

    root, _, _ = pretrained
    volumes = _held_out_volumes(tmp_path / "held_out")
    torch.manual_seed(0)
    masks = random_token_mask(len(volumes), 64, 0.5)
    patches = patchify(volumes, (8, 8, 8))
    target = torch.stack([patches.mean(-1), patches.std(-1)], -1)  # (B, N, 2)

    def probe_r2(encoder) -> float:
        with torch.no_grad():
            tokens = encoder(volumes, mask=masks).tokens
        x = torch.cat([tokens, torch.ones(*tokens.shape[:2], 1)], -1)
        train, test = (slice(0, 10), slice(10, 16))
        a, b = x[train][masks[train]], target[train][masks[train]]
        weights = torch.linalg.solve(a.T @ a + torch.eye(a.shape[1]), a.T @ b)
        error = (x[test][masks[test]] @ weights - target[test][masks[test]]).square().mean(0)
        return float((1 - error / target[test][masks[test]].var(0)).mean())

    scores = {}
    for start in ("random", "pretrained"):
        torch.manual_seed(0)
        encoder = XLSTMEncoder(img_size=32, num_cls_tokens=1, mask_token=True, **TINY, **BLOCKS).eval()
        if start == "pretrained":
            load_pretrained_encoder(encoder, root / "models" / "pretrained.pt")
        scores[start] = probe_r2(encoder)
    assert scores["pretrained"] > scores["random"] + 0.1, scores
