"""Synthetic phantoms: labels, geometry, intensities, reproducibility and the on-disk layouts the bundles read."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from xlstm_monai.data.label_codes import MMWHS_CODES, MMWHS_LABELS
from xlstm_monai.phantoms import (
    brain_phantom,
    heart_phantom,
    hippocampus_phantom,
    write_brain_phantoms,
    write_heart_phantoms,
    write_hippocampus_phantoms,
)
from xlstm_monai.phantoms import heart as phantoms

# Small grids with proportionally larger voxels keep the same anatomy (144 mm field of view) and the tests fast.
HEART_SHAPE, HEART_SPACING = (48, 48, 48), (3.0, 3.0, 3.0)
BRAIN_SHAPE, BRAIN_SPACING = (40, 48, 40), (4.0, 4.0, 4.0)


def _centroid_mm(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    index = np.argwhere(mask).mean(axis=0)
    return affine[:3, :3] @ index + affine[:3, 3]


def _volume_ml(mask: np.ndarray, spacing) -> float:
    return float(mask.sum() * np.prod(spacing) / 1000.0)


def _world_axes(shape, affine):
    return [
        affine[a, a] * np.arange(n).reshape([-1 if k == a else 1 for k in range(3)]) + affine[a, 3]
        for a, n in enumerate(shape)
    ]


@pytest.mark.parametrize("modality", ["ct", "mr"])
def test_heart_phantom_arrays_and_affine(modality):
    image, label, affine = heart_phantom(modality, HEART_SHAPE, HEART_SPACING, seed=3)
    assert image.shape == HEART_SHAPE and label.shape == HEART_SHAPE
    assert image.dtype == np.float32 and label.dtype == np.int16
    assert np.isfinite(image).all()
    assert sorted(np.unique(label).tolist()) == sorted(MMWHS_CODES)
    assert affine.shape == (4, 4) and affine.dtype == np.float64
    np.testing.assert_allclose(np.diag(affine)[:3], HEART_SPACING)
    np.testing.assert_allclose(affine[:3, :3], np.diag(HEART_SPACING))  # RAS, axis-aligned
    centre = affine @ np.array([(n - 1) / 2 for n in HEART_SHAPE] + [1.0])
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-6)


def test_heart_every_structure_in_every_case():
    for seed in range(12):
        modality = "ct" if seed % 2 else "mr"
        _, label, _ = heart_phantom(modality, (40, 40, 40), (3.6, 3.6, 3.6), seed=seed)
        assert sorted(np.unique(label).tolist()) == sorted(MMWHS_CODES), f"seed {seed}"


def test_heart_reproducible_per_seed():
    a = heart_phantom("ct", HEART_SHAPE, HEART_SPACING, seed=7)
    b = heart_phantom("ct", HEART_SHAPE, HEART_SPACING, seed=7)
    c = heart_phantom("ct", HEART_SHAPE, HEART_SPACING, seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    assert not np.allclose(a[0], c[0])


def test_heart_anatomy_is_oriented_and_sized_like_a_heart():
    spacing = (2.25, 2.25, 2.25)
    for seed in range(4):
        _, label, affine = heart_phantom("ct", (64, 64, 64), spacing, seed=seed)
        centre = {name: _centroid_mm(label == code, affine) for name, code in MMWHS_LABELS.items() if code}
        volume = {name: _volume_ml(label == code, spacing) for name, code in MMWHS_LABELS.items() if code}
        # RAS: +x right, +y anterior, +z superior.
        assert centre["left_ventricle"][0] < centre["right_ventricle"][0]  # LV left of RV
        assert centre["right_ventricle"][1] > centre["left_atrium"][1]  # RV anterior, LA posterior
        assert centre["left_atrium"][1] < centre["left_ventricle"][1]
        assert centre["right_atrium"][0] > centre["left_atrium"][0]  # RA right of LA
        assert centre["ascending_aorta"][2] > centre["left_ventricle"][2] + 20.0  # aorta rises above the LV
        assert centre["pulmonary_artery"][2] > centre["right_ventricle"][2] + 15.0
        assert 30.0 < volume["left_ventricle"] < 170.0
        assert 50.0 < volume["myocardium"] < 260.0
        for name in ("right_ventricle", "left_atrium", "right_atrium", "ascending_aorta", "pulmonary_artery"):
            assert 5.0 < volume[name] < 200.0, (seed, name, volume[name])
        assert 250.0 < sum(volume.values()) < 900.0
        # The whole heart is inside the field of view with a margin (default field of view, 144 mm).
        assert not label[:2].any() and not label[-2:].any()
        assert not label[:, :2].any() and not label[:, -2:].any()
        assert not label[:, :, :2].any() and not label[:, :, -2:].any()


def test_heart_myocardium_is_a_thick_shell_around_the_lv():
    _, label, _ = heart_phantom("ct", HEART_SHAPE, HEART_SPACING, seed=1)
    myo = label == MMWHS_LABELS["myocardium"]
    lv = label == MMWHS_LABELS["left_ventricle"]
    core = myo.copy()
    for axis in range(3):
        for shift in (1, -1):
            core &= np.roll(myo, shift, axis=axis)
    assert core.sum() > 0.3 * myo.sum()  # several voxels thick at 3 mm spacing
    # Every LV voxel's 6-neighbours are LV, myocardium or (at the open base) a thin valve plane.
    grown = lv.copy()
    for axis in range(3):
        for shift in (1, -1):
            grown |= np.roll(lv, shift, axis=axis)
    ring = grown & ~lv
    assert myo[ring].mean() > 0.6


def test_heart_ct_intensities_are_hounsfield_like():
    image, label, _ = heart_phantom("ct", HEART_SHAPE, HEART_SPACING, seed=2)
    lv = np.median(image[label == MMWHS_LABELS["left_ventricle"]])
    rv = np.median(image[label == MMWHS_LABELS["right_ventricle"]])
    myo = np.median(image[label == MMWHS_LABELS["myocardium"]])
    assert 250.0 < lv < 500.0 and 150.0 < rv < 550.0
    assert 60.0 < myo < 180.0 and lv > myo + 120.0
    outside = label == 0
    assert np.percentile(image, 0.5) < -950.0  # air
    lung = (image[outside] > -950.0) & (image[outside] < -700.0)
    assert lung.mean() > 0.02  # lungs around the heart
    assert np.percentile(image[outside], 99.9) > 500.0  # bone brighter than contrast blood
    assert -1100.0 < image.min() and image.max() < 3100.0


def test_heart_mr_contrast_differs_from_ct():
    image, label, _ = heart_phantom("mr", HEART_SHAPE, HEART_SPACING, seed=2)
    lv = np.median(image[label == MMWHS_LABELS["left_ventricle"]])
    myo = np.median(image[label == MMWHS_LABELS["myocardium"]])
    assert image.min() >= 0.0 and lv > 2.5 * myo  # bright blood, dark muscle, magnitude image
    scales = [np.median(heart_phantom("mr", (32, 32, 32), (4.5,) * 3, seed=s)[0]) for s in range(4)]
    assert max(scales) > 1.5 * min(scales)  # random global scale per case
    for seed in range(10):
        rng = np.random.default_rng(seed)
        ct, mr = phantoms._ct_intensities(rng), phantoms._mr_intensities(rng)
        assert ct[phantoms._FAT] < ct[phantoms._MYO] < ct[phantoms._LEFT_BLOOD] < ct[phantoms._CORTEX]
        assert mr[phantoms._CORTEX] < mr[phantoms._MYO] < mr[phantoms._FAT]
        assert mr[phantoms._LEFT_BLOOD] > mr[phantoms._MYO]


def test_heart_left_right_blood_not_a_fixed_shortcut():
    differences = []
    for seed in range(8):
        image, label, _ = heart_phantom("ct", (32, 32, 32), (4.5,) * 3, seed=seed)
        lv = np.median(image[label == MMWHS_LABELS["left_ventricle"]])
        rv = np.median(image[label == MMWHS_LABELS["right_ventricle"]])
        differences.append(rv - lv)
    assert min(differences) < 0.0 < max(differences)


def test_write_heart_phantoms_mmwhs_names_and_loadable(tmp_path):
    from monai.transforms import LoadImage

    entries = write_heart_phantoms(
        str(tmp_path), num_cases=2, modality="ct", shape=(32, 32, 32), spacing=(4.5,) * 3, seed=5
    )
    assert [os.path.basename(e["image"]) for e in entries] == [
        "ct_train_1001_image.nii.gz",
        "ct_train_1002_image.nii.gz",
    ]
    assert [os.path.basename(e["label"]) for e in entries] == [
        "ct_train_1001_label.nii.gz",
        "ct_train_1002_label.nii.gz",
    ]
    image, label, affine = heart_phantom("ct", (32, 32, 32), (4.5,) * 3, seed=6)  # case 2 uses seed + 1
    loader = LoadImage(image_only=True)
    loaded_image, loaded_label = loader(entries[1]["image"]), loader(entries[1]["label"])
    np.testing.assert_allclose(np.asarray(loaded_image), image, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(loaded_label).astype(np.int16), label)
    np.testing.assert_allclose(np.asarray(loaded_image.affine), affine, atol=1e-5)
    np.testing.assert_allclose(np.asarray(loaded_label.affine), affine, atol=1e-5)

    import nibabel as nib

    header = nib.load(entries[0]["label"]).header
    assert int(header["qform_code"]) == 1 and int(header["sform_code"]) == 1
    assert np.issubdtype(header.get_data_dtype(), np.integer)
    assert nib.load(entries[0]["image"]).header.get_data_dtype() == np.float32

    mr = write_heart_phantoms(
        str(tmp_path / "mr"), 1, "mr", (32, 32, 32), (4.5,) * 3, split="test", first_id=2001, with_labels=False
    )
    assert mr == [{"image": str(tmp_path / "mr" / "mr_test_2001_image.nii.gz")}]
    assert os.listdir(tmp_path / "mr") == ["mr_test_2001_image.nii.gz"]


def test_hippocampus_phantom_labels_and_shape():
    image, label, affine = hippocampus_phantom(seed=4)
    assert image.shape == (36, 50, 36) and label.shape == (36, 50, 36)
    assert image.dtype == np.float32 and label.dtype == np.uint8
    assert set(np.unique(label).tolist()) == {0, 1, 2}
    np.testing.assert_allclose(np.diag(affine)[:3], 1.0)
    anterior, posterior = _centroid_mm(label == 1, affine), _centroid_mm(label == 2, affine)
    assert anterior[1] > posterior[1] + 8.0  # head is anterior (+Y) of body and tail
    assert posterior[2] > anterior[2]  # the tail curves up
    assert (label == 1).sum() > 0.8 * (label == 2).sum()  # the head is the thicker part
    assert 1500 < (label > 0).sum() < 6500  # ~1.5-6.5 mL at 1 mm
    # Visible contrast: the hippocampus is darker than the brightest (white matter) surroundings.
    assert np.median(image[label > 0]) < np.percentile(image[label == 0], 90)
    again = hippocampus_phantom(seed=4)
    np.testing.assert_array_equal(again[0], image)
    assert not np.array_equal(hippocampus_phantom(seed=5)[1], label)


def test_write_hippocampus_phantoms_decathlon_layout(tmp_path):
    from monai.data import load_decathlon_datalist
    from monai.transforms import LoadImage

    path = write_hippocampus_phantoms(str(tmp_path), num_cases=3, seed=1)
    assert path == str(tmp_path / "dataset.json")
    with open(path, encoding="utf-8") as handle:
        meta = json.load(handle)
    expected_keys = {
        "name",
        "description",
        "reference",
        "licence",
        "release",
        "tensorImageSize",
        "modality",
        "labels",
        "numTraining",
        "numTest",
        "training",
        "test",
    }
    assert set(meta) == expected_keys
    assert meta["modality"] == {"0": "MRI"}
    assert meta["labels"] == {"0": "background", "1": "Anterior", "2": "Posterior"}
    assert meta["numTraining"] == 3 and meta["numTest"] == 0 and meta["test"] == []
    assert meta["training"][0] == {
        "image": "./imagesTr/hippocampus_001.nii.gz",
        "label": "./labelsTr/hippocampus_001.nii.gz",
    }

    datalist = load_decathlon_datalist(path, data_list_key="training", base_dir=str(tmp_path))
    assert len(datalist) == 3
    loader = LoadImage(image_only=True)
    for item in datalist:
        assert os.path.isfile(item["image"]) and os.path.isfile(item["label"])
        label = np.asarray(loader(item["label"]))
        assert set(np.unique(label).tolist()) == {0, 1, 2}
        assert np.asarray(loader(item["image"])).shape == label.shape


def _dark_central_ml(image: np.ndarray, affine: np.ndarray) -> float:
    """Volume of CSF-dark voxels around the lateral ventricles."""
    x, y, z = _world_axes(image.shape, affine)
    box = (np.abs(x) < 22) & (np.abs(y) < 35) & (z > -5) & (z < 30)
    dark = image < 0.4 * np.percentile(image[image > 0], 95)
    return _volume_ml(dark & box, np.diag(affine)[:3])


def test_brain_phantom_head_and_class_signal():
    image, affine = brain_phantom("CN", "F", seed=0)
    assert image.shape == (80, 96, 80) and image.dtype == np.float32
    np.testing.assert_allclose(np.diag(affine)[:3], 2.0)
    assert image.min() == 0.0 and image[0, 0, 0] == 0.0 and image[-1, -1, -1] == 0.0  # background outside the head
    assert 0.2 < (image > 0).mean() < 0.8

    cn = [_dark_central_ml(*brain_phantom("CN", "MF"[s % 2], BRAIN_SHAPE, BRAIN_SPACING, seed=s)) for s in range(5)]
    ad = [_dark_central_ml(*brain_phantom("AD", "MF"[s % 2], BRAIN_SHAPE, BRAIN_SPACING, seed=s)) for s in range(5)]
    assert np.mean(ad) > 1.3 * np.mean(cn)

    male = [(brain_phantom("CN", "M", BRAIN_SHAPE, BRAIN_SPACING, seed=s)[0] > 0).sum() for s in range(4)]
    female = [(brain_phantom("CN", "F", BRAIN_SHAPE, BRAIN_SPACING, seed=s)[0] > 0).sum() for s in range(4)]
    assert np.mean(male) > np.mean(female)

    np.testing.assert_array_equal(
        brain_phantom("AD", "M", BRAIN_SHAPE, BRAIN_SPACING, seed=3)[0],
        brain_phantom("AD", "M", BRAIN_SHAPE, BRAIN_SPACING, seed=3)[0],
    )


def test_write_brain_phantoms_csv(tmp_path):
    from monai.transforms import LoadImage

    path = write_brain_phantoms(
        str(tmp_path), num_cases=6, shape=BRAIN_SHAPE, spacing=BRAIN_SPACING, seed=2, ad_fraction=0.5
    )
    assert path == str(tmp_path / "participants.csv")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["ID", "Image", "Diagnosis", "Sex", "Age"]
        rows = list(reader)
    assert [r["ID"] for r in rows] == [f"SUBJ-{i:04d}" for i in range(1, 7)]
    assert sorted(r["Diagnosis"] for r in rows) == ["AD"] * 3 + ["CN"] * 3
    assert {r["Sex"] for r in rows} == {"M", "F"}
    for row in rows:
        assert row["Image"] == f"images/{row['ID']}_T1.nii.gz"
        assert 40.0 < float(row["Age"]) < 100.0
        image = LoadImage(image_only=True)(os.path.join(str(tmp_path), row["Image"]))
        assert tuple(image.shape) == BRAIN_SHAPE
    again = write_brain_phantoms(str(tmp_path / "again"), num_cases=6, shape=BRAIN_SHAPE, spacing=BRAIN_SPACING, seed=2)
    with open(again, newline="", encoding="utf-8") as handle:
        assert [dict(r, Image="") for r in csv.DictReader(handle)] == [dict(r, Image="") for r in rows]


@pytest.mark.parametrize(
    "call",
    [
        lambda: heart_phantom("pet"),
        lambda: heart_phantom("ct", shape=(20, 96, 96)),
        lambda: heart_phantom("ct", shape=(96, 96)),
        lambda: heart_phantom("ct", spacing=(0.0, 1.5, 1.5)),
        lambda: heart_phantom("ct", shape=(32.5, 32, 32)),
        lambda: write_heart_phantoms("unused", num_cases=0),
        lambda: write_heart_phantoms("unused", modality="us"),
        lambda: write_heart_phantoms("unused", split=""),
        lambda: hippocampus_phantom(shape=(8, 50, 36)),
        lambda: write_hippocampus_phantoms("unused", num_cases=0),
        lambda: brain_phantom("MCI"),
        lambda: brain_phantom("CN", "X"),
        lambda: brain_phantom("CN", "M", shape=(10, 96, 80)),
        lambda: write_brain_phantoms("unused", num_cases=-1),
        lambda: write_brain_phantoms("unused", ad_fraction=1.5),
    ],
)
def test_bad_arguments_raise_value_error(call, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError):
        call()
    assert not os.path.exists(tmp_path / "unused")
