"""heart_seg_ct and heart_seg_mri: train -> evaluate -> infer through the bundle configs, on phantoms and real data."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import yaml

from tests.bundles.helpers import SMALL_UNET, config_path, load_json, load_yaml, read_structure_metrics, run_workflow
from tests.conftest import shared_data
from xlstm_monai.data import MMWHS_CODES, build_datalist
from xlstm_monai.phantoms import write_heart_phantoms
from xlstm_monai.presets import TINY, overrides

BUNDLES = ("heart_seg_ct", "heart_seg_mri")
MODALITY = {"heart_seg_ct": "ct", "heart_seg_mri": "mr"}
# CPU recipe: whole 48^3 volumes at 3 mm, a small network, a high learning rate
FAST = {
    **SMALL_UNET,
    "roi_size": [48, 48, 48],
    "spacing": [3.0, 3.0, 3.0],
    "num_samples": 1,
    "num_workers": 0,
    "learning_rate": 3.0e-3,
    "warmup_epochs": 2,
}
EPOCHS = {"heart_seg_ct": 50, "heart_seg_mri": 60}


@pytest.mark.parametrize("bundle", BUNDLES)
def test_metadata_is_valid(bundle, tmp_path):
    from monai.bundle import verify_metadata

    from tests.conftest import REPO_ROOT

    schema = REPO_ROOT.parent / "shared" / "monai" / "meta_schema_20240725.json"
    if not schema.exists():
        pytest.skip(f"offline meta schema {schema} is absent")
    verify_metadata(meta_file=config_path(bundle, "metadata.json"), filepath=str(schema))
    meta = load_json(config_path(bundle, "metadata.json"))
    assert meta["version"] in meta["changelog"]
    channels = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert list(channels.values()) == [
        "background",
        "left_ventricle",
        "right_ventricle",
        "left_atrium",
        "right_atrium",
        "myocardium",
        "ascending_aorta",
        "pulmonary_artery",
    ]
    assert {"xlstm-monai", "xlstm"} <= set(meta["required_packages_version"])


@pytest.mark.parametrize("bundle", BUNDLES)
def test_network_in_out_and_configs_agree(bundle):
    from monai.bundle import verify_net_in_out

    verify_net_in_out(
        net_id="network_def",
        meta_file=config_path(bundle, "metadata.json"),
        config_file=config_path(bundle, "inference.yaml"),
        n=2,
        **overrides(TINY),
    )
    train, infer = load_yaml(bundle, "train.yaml"), load_yaml(bundle, "inference.yaml")
    assert train["network_def"] == infer["network_def"]
    for key in ("spacing", "roi_size", "num_classes", "label_codes"):
        assert train[key] == infer[key], key
    evaluate = load_yaml(bundle, "evaluate.yaml")
    saver = next(h for h in evaluate["validate#handlers"] if h["_target_"] == "MetricsSaver")
    known = set(train["validate"]["key_metric"]) | set(evaluate["validate#additional_metrics"])
    assert set(saver["metrics"]) <= known and set(saver["metric_details"]) <= known


@pytest.fixture(scope="module", params=BUNDLES)
def trained(request, tmp_path_factory):
    """Train on 8 phantoms (3 folds: fold 0 = 4 unseen cases for validation), then evaluate; shared by tests."""
    bundle = request.param
    root = tmp_path_factory.mktemp(bundle)
    data = root / "data"
    write_heart_phantoms(str(data), 12, MODALITY[bundle], (48, 48, 48), (3.0, 3.0, 3.0), seed=0)
    build_datalist(str(data), str(data / "datalist.json"), num_folds=3)
    common = {**FAST, "bundle_root": str(root), "dataset_dir": str(data)}
    run_workflow(bundle, ["train.yaml"], "train", epochs=EPOCHS[bundle], val_interval=10, **common)
    run_workflow(bundle, ["train.yaml", "evaluate.yaml"], "train", **common)
    return bundle, root, common


@pytest.mark.slow
def test_training_reaches_dice_on_unseen_phantoms(trained):
    bundle, root, _ = trained
    assert (root / "models" / "model.pt").is_file() and (root / "models" / "last.pt").is_file()
    metrics = read_structure_metrics(root / "eval")
    assert list(metrics) == [
        "left_ventricle",
        "right_ventricle",
        "left_atrium",
        "right_atrium",
        "myocardium",
        "ascending_aorta",
        "pulmonary_artery",
    ]
    dice = np.mean([m["val_mean_dice"] for m in metrics.values()])
    assert dice >= 0.80, f"{bundle}: mean foreground Dice {dice:.3f} on 4 unseen phantoms"
    assert all(np.isfinite(m["val_hd95"]) and m["val_hd95"] >= 0 for m in metrics.values())


@pytest.mark.slow
def test_inference_writes_mmwhs_codes_on_input_grid(trained):
    bundle, root, common = trained
    out = root / "pred"
    run_workflow(
        bundle,
        ["inference.yaml"],
        "infer",
        output_dir=str(out),
        **{k: v for k, v in common.items() if not k.startswith(("learning", "warmup", "num_samples"))},
    )
    images = sorted((root / "data").glob("*_image.nii.gz"))
    predictions = sorted(out.glob("*_seg.nii.gz"))
    assert len(predictions) == len(images) == 12
    for image, prediction in zip(images, predictions):
        src, seg = nib.load(image), nib.load(prediction)
        assert seg.shape == src.shape and np.allclose(seg.affine, src.affine)
        values = set(np.unique(np.asarray(seg.dataobj)).tolist())
        assert values <= set(MMWHS_CODES) and len(values) >= 6


@pytest.mark.slow
def test_inverting_labels_instead_of_probabilities_agrees_on_the_input_grid(trained, tmp_path):
    """invert_labels takes the label on the network's grid and resamples it (nearest) instead of the probabilities:
    the same grid, affine and codes, and the same label almost everywhere (phantoms at 3 mm, network at 1.5 mm)."""
    bundle, root, common = trained
    overrides = {k: v for k, v in common.items() if not k.startswith(("learning", "warmup", "num_samples"))}
    for invert_labels in (False, True):
        out = tmp_path / str(invert_labels)
        run_workflow(bundle, ["inference.yaml"], "infer", output_dir=str(out), invert_labels=invert_labels, **overrides)
    for default in sorted((tmp_path / "False").glob("*_seg.nii.gz")):
        fast = nib.load(tmp_path / "True" / default.name)
        assert fast.shape == nib.load(default).shape and np.allclose(fast.affine, nib.load(default).affine)
        a, b = np.asarray(nib.load(default).dataobj), np.asarray(fast.dataobj)
        assert set(np.unique(b).tolist()) <= set(MMWHS_CODES)
        assert (a == b).mean() > 0.97, f"{default.name}: labels agree on {(a == b).mean():.3f} of voxels"


@pytest.mark.slow
@pytest.mark.realdata
def test_inference_on_real_ct_keeps_shape_and_affine(trained, tmp_path):
    bundle, root, common = trained
    if bundle != "heart_seg_ct":
        pytest.skip("the real CT is for heart_seg_ct")
    ct_dir = shared_data("totalseg_heart_ct")
    overrides = {k: v for k, v in common.items() if not k.startswith(("learning", "warmup", "num_samples"))}
    overrides["dataset_dir"] = str(ct_dir)
    run_workflow(bundle, ["inference.yaml"], "infer", input_pattern="ct.nii.gz", output_dir=str(tmp_path), **overrides)
    src, seg = nib.load(ct_dir / "ct.nii.gz"), nib.load(tmp_path / "ct_seg.nii.gz")
    assert seg.shape == src.shape and np.allclose(seg.affine, src.affine)
    # a phantom-trained model already finds the heart in a real CT: whole-heart overlap with the reference mask
    heart = np.asarray(nib.load(ct_dir / "label_heart1_pa2.nii.gz").dataobj) == 1
    predicted = np.isin(np.asarray(seg.dataobj), [500, 600, 420, 550, 205])
    assert 2 * (heart & predicted).sum() / (heart.sum() + predicted.sum()) > 0.5


def test_unknown_label_code_stops_with_file_name(tmp_path):
    from monai.transforms import LoadImaged

    from xlstm_monai.transforms import MapLabelCodesd

    entries = write_heart_phantoms(str(tmp_path), 1, "ct", (32, 32, 32), (4.5, 4.5, 4.5))
    label = nib.load(entries[0]["label"])
    array = np.asarray(label.dataobj).copy()
    array[0, 0, 0] = 421
    nib.save(nib.Nifti1Image(array, label.affine), entries[0]["label"])
    data = LoadImaged(keys="label")({"label": entries[0]["label"]})
    with pytest.raises(ValueError, match=r"ct_train_1001_label\.nii\.gz: label values 421 are not in the declared"):
        MapLabelCodesd(keys="label", codes=MMWHS_CODES)(data)


@pytest.mark.slow
@pytest.mark.realdata
def test_sunnybrook_fold_runs_and_scores_lv_channels(tmp_path):
    """Real cardiac MRI: blood pool 1 and myocardium 2 go to the LV (1) and myocardium (5) channels."""
    source = shared_data("sunnybrook_lv_mri")
    datalist = tmp_path / "datalist.json"
    build_datalist(str(source), str(datalist), kind="paired", modality="MRI", num_folds=4)
    overrides = {
        **FAST,
        "bundle_root": str(tmp_path),
        "dataset_dir": str(source),
        "datalist": str(datalist),
        "label_codes": [0, 1, None, None, None, 2, None, None],
        "spacing": [3.0, 3.0, 3.0],
    }
    run_workflow("heart_seg_mri", ["train.yaml"], "train", epochs=2, val_interval=1, **overrides)
    run_workflow("heart_seg_mri", ["train.yaml", "evaluate.yaml"], "train", **overrides)
    metrics = read_structure_metrics(tmp_path / "eval")
    scored = {name for name, m in metrics.items() if np.isfinite(m["val_mean_dice"])}
    assert scored == {"left_ventricle", "myocardium"}
    assert all(0.0 <= metrics[name]["val_mean_dice"] <= 1.0 for name in scored)


def test_yaml_floats_are_numbers():
    """PyYAML reads 1e-4 as a string; every learning-rate-like value must be a float."""
    for bundle in BUNDLES:
        train = yaml.safe_load(open(config_path(bundle, "train.yaml")))
        assert isinstance(train["learning_rate"], float) and isinstance(train["weight_decay"], float)
