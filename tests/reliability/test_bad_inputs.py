"""Bad input is refused before training, one line per file naming the problem; inference skips broken files."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch

from tests.bundles.helpers import config_path, run_workflow
from tests.reliability.conftest import TINY_RUN
from xlstm_monai.data import DataCheckError, check_datalist
from xlstm_monai.data.label_codes import MMWHS_CODES


def _case(folder, name, shape=(24, 24, 24), affine=None, image=None, label=None):
    affine = np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine
    image = np.random.default_rng(0).normal(0, 100, shape).astype(np.float32) if image is None else image
    label = np.zeros(shape[:3], np.int16) if label is None else label
    label[8:16, 8:16, 8:16] = 500
    nib.save(nib.Nifti1Image(image, affine), folder / f"{name}_image.nii.gz")
    nib.save(nib.Nifti1Image(label, np.diag([2.0, 2.0, 2.0, 1.0])), folder / f"{name}_label.nii.gz")
    return {"image": str(folder / f"{name}_image.nii.gz"), "label": str(folder / f"{name}_label.nii.gz")}


def _problem(cases, **kwargs) -> str:
    with pytest.raises(DataCheckError) as error:
        check_datalist(cases, label_values=MMWHS_CODES, **kwargs)
    return str(error.value)


def test_truncated_file(tmp_path):
    case = _case(tmp_path, "ct_train_1001")
    data = (tmp_path / "ct_train_1001_image.nii.gz").read_bytes()
    (tmp_path / "ct_train_1001_image.nii.gz").write_bytes(data[: len(data) // 2])
    message = _problem([case])
    assert "ct_train_1001_image.nii.gz: cannot be read" in message


def test_two_dimensional_image(tmp_path):
    case = _case(tmp_path, "ct_train_1002", image=np.zeros((24, 24), np.float32))
    assert "ct_train_1002_image.nii.gz: is 2D (shape (24, 24)), expected a 3D volume" in _problem([case])


def test_nan_voxels(tmp_path):
    image = np.zeros((24, 24, 24), np.float32)
    image[0, 0, :5] = np.nan
    case = _case(tmp_path, "ct_train_1003", image=image)
    assert "ct_train_1003_image.nii.gz: has 5 NaN or infinite voxels" in _problem([case])


def test_label_value_outside_the_mmwhs_codes(tmp_path):
    label = np.zeros((24, 24, 24), np.int16)
    label[0, 0, 0] = 421
    case = _case(tmp_path, "ct_train_1004", label=label)
    assert "ct_train_1004_label.nii.gz: label values 421 are not in the declared set" in _problem([case])


def test_shape_mismatch_names_both_files(tmp_path):
    case = _case(tmp_path, "ct_train_1005", image=np.zeros((24, 24, 20), np.float32))
    message = _problem([case])
    assert (
        "ct_train_1005_label.nii.gz: shape (24, 24, 24) differs from image" in message
        and "ct_train_1005_image.nii.gz shape (24, 24, 20)" in message
    )


def test_affine_mismatch_names_both_files(tmp_path):
    case = _case(tmp_path, "ct_train_1006", affine=np.diag([2.0, 2.0, 3.0, 1.0]))
    message = _problem([case])
    assert "ct_train_1006_label.nii.gz: affine differs from image" in message and "ct_train_1006_image" in message


def test_warnings_for_a_constant_image_and_a_case_in_both_sets(tmp_path, caplog):
    blank = _case(tmp_path, "ct_train_1008", image=np.full((24, 24, 24), -1000.0, np.float32))
    shared, other = _case(tmp_path, "ct_train_1009"), _case(tmp_path, "ct_train_1010")
    report = check_datalist([blank, shared], label_values=MMWHS_CODES, validation=[shared, other])
    assert report.ok and report.checked == 4  # warnings do not stop a run
    warnings = "\n".join(report.lines("warnings"))
    assert "ct_train_1008_image.nii.gz: has constant intensity -1000: normalised, it is a blank input" in warnings
    assert "ct_train_1009_image.nii.gz: is in both the training and the validation set" in warnings
    assert "ct_train_1010" not in warnings
    assert "is in both the training and the validation set" in caplog.text


def test_missing_file(tmp_path):
    case = _case(tmp_path, "ct_train_1007")
    (tmp_path / "ct_train_1007_label.nii.gz").unlink()
    assert "ct_train_1007_label.nii.gz: cannot be read" in _problem([case])


def test_wrong_channel_count(tmp_path):
    case = _case(tmp_path, "ct_train_1008", image=np.zeros((24, 24, 24, 2), np.float32))
    assert "ct_train_1008_image.nii.gz: has 2 channels (shape (24, 24, 24, 2)), expected 1" in _problem([case])


def test_empty_label_is_only_a_warning(tmp_path, caplog):
    case = _case(tmp_path, "ct_train_1009")
    label = nib.load(case["label"])
    nib.save(nib.Nifti1Image(np.zeros(label.shape, np.int16), label.affine), case["label"])
    report = check_datalist([case], label_values=MMWHS_CODES)
    assert report.ok and "label is empty" in report.lines("warnings")[0]


def test_every_problem_is_reported_together_by_the_command(tmp_path):
    """xlstm-monai check-data on a datalist with five bad cases: one line per file, exit code 1."""
    good = _case(tmp_path, "ct_train_1010")
    bad = [
        _case(tmp_path, "ct_train_1011", image=np.zeros((24, 24), np.float32)),
        _case(tmp_path, "ct_train_1012", affine=np.diag([2.0, 2.0, 3.0, 1.0])),
    ]
    label = np.zeros((24, 24, 24), np.int16)
    label[1, 1, 1] = 421
    bad.append(_case(tmp_path, "ct_train_1013", label=label))
    (tmp_path / "ct_train_1014_image.nii.gz").write_bytes(gzip.compress(b"not a nifti"))
    bad.append({"image": str(tmp_path / "ct_train_1014_image.nii.gz"), "label": good["label"]})
    bad.append({"image": str(tmp_path / "absent_image.nii.gz"), "label": good["label"]})
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": [dict(c, fold=i % 2) for i, c in enumerate([good] + bad)]}))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "xlstm_monai.cli",
            "check-data",
            "--config_file",
            config_path("heart_seg_ct", "train.yaml"),
            "--datalist",
            str(datalist),
            "--dataset_dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stdout.splitlines() if line.strip().startswith("ERROR")]
    assert len(errors) == 5, result.stdout
    for name in ("1011_image", "1012_label", "1013_label", "1014_image", "absent_image"):
        assert sum(name in line for line in errors) == 1, (name, errors)


def test_training_refuses_bad_data_before_any_step(phantom_set, tmp_path):
    data, datalist = phantom_set
    label = data / "ct_train_1002_label.nii.gz"
    image = nib.load(label)
    array = np.asarray(image.dataobj).copy()
    array[0, 0, 0] = 421
    nib.save(nib.Nifti1Image(array, image.affine), label)
    with pytest.raises(Exception) as error:
        run_workflow(
            "heart_seg_ct",
            ["train.yaml"],
            "train",
            bundle_root=str(tmp_path),
            dataset_dir=str(data),
            epochs=1,
            **TINY_RUN,
        )
    assert "ct_train_1002_label.nii.gz: label values 421" in _chain(error.value)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_inference_skips_a_broken_file_and_segments_the_rest(phantom_set, tmp_path):
    from monai.bundle import ConfigParser

    data, _ = phantom_set
    (data / "ct_train_1003_image.nii.gz").write_bytes(b"\x1f\x8b broken")  # not even a header
    whole = (data / "ct_train_1005_image.nii.gz").read_bytes()
    (data / "ct_train_1005_image.nii.gz").write_bytes(whole[: len(whole) // 2])  # a header, then voxels cut short
    nib.save(nib.Nifti1Image(np.zeros((32, 32), np.float32), np.eye(4)), data / "ct_train_1099_image.nii.gz")
    overrides = {k: v for k, v in TINY_RUN.items() if k.startswith("network_def")}
    parser = ConfigParser()
    parser.read_config(config_path("heart_seg_ct", "inference.yaml"))
    parser.update({**overrides, "roi_size": [32, 32, 32]})
    (tmp_path / "models").mkdir()
    torch.save(parser.get_parsed_content("network_def").state_dict(), tmp_path / "models" / "model.pt")
    workflow = run_workflow(
        "heart_seg_ct",
        ["inference.yaml"],
        "infer",
        bundle_root=str(tmp_path),
        dataset_dir=str(data),
        output_dir=str(tmp_path / "out"),
        roi_size=[32, 32, 32],
        spacing=[4.5, 4.5, 4.5],
        num_workers=0,
        **overrides,
    )
    written = sorted(p.name for p in (tmp_path / "out").glob("*_seg.nii.gz"))
    assert written == [f"ct_train_100{i}_image_seg.nii.gz" for i in (1, 2, 4, 6)]
    screen = workflow.parser.get_parsed_content("input_screen")
    failures = screen.failures  # logged, and listed again at the end
    assert len(failures) == 3
    assert "ct_train_1003_image.nii.gz: cannot be read" in failures[0]  # from its header, before the run
    assert "ct_train_1099_image.nii.gz: is 2D" in failures[1]
    assert "ct_train_1005_image.nii.gz: cannot be read" in failures[2]  # when its voxels were read, once
    assert screen.unreadable == 1


def _chain(error: BaseException) -> str:
    messages = []
    while error is not None:
        messages.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(messages)
