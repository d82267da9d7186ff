"""The data check at scale: headers first, a process pool, a cache of unchanged files; the same report each way."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from xlstm_monai.data import check as data_check
from xlstm_monai.data import check_datalist
from xlstm_monai.data.label_codes import MMWHS_CODES


def _cases(folder, count, bad=()):
    """``count`` image/label pairs; indices in ``bad`` get a label on another grid (a geometry problem)."""
    cases = []
    rng = np.random.default_rng(0)
    for i in range(count):
        image = rng.normal(0, 100, (20, 20, 20)).astype(np.float32)
        label = np.zeros((20, 20, 20), np.int16)
        label[5:10, 5:10, 5:10] = 500
        label_affine = np.diag([2.0, 2.0, 3.0 if i in bad else 2.0, 1.0])
        nib.save(nib.Nifti1Image(image, np.diag([2.0, 2.0, 2.0, 1.0])), folder / f"case{i}_image.nii.gz")
        nib.save(nib.Nifti1Image(label, label_affine), folder / f"case{i}_label.nii.gz")
        cases.append({"image": str(folder / f"case{i}_image.nii.gz"), "label": str(folder / f"case{i}_label.nii.gz")})
    return cases


def test_the_pool_gives_the_serial_report(tmp_path):
    cases = _cases(tmp_path, 12, bad={3, 7})
    serial = check_datalist(cases, MMWHS_CODES, raise_error=False, workers=1, cache=False)
    pooled = check_datalist(cases, MMWHS_CODES, raise_error=False, workers=2, cache=False)
    assert serial.lines() == pooled.lines() and len(serial.problems) == 2
    assert all("affine differs from image" in line for line in serial.lines())


def test_a_geometry_problem_is_found_from_the_headers_without_reading_voxels(tmp_path, monkeypatch):
    cases = _cases(tmp_path, 1, bad={0})

    def no_voxels(*args, **kwargs):
        raise AssertionError("voxels were read")

    monkeypatch.setattr(data_check, "_load", no_voxels)
    report = check_datalist(cases, MMWHS_CODES, raise_error=False, workers=1, cache=False)
    assert "case0_label.nii.gz: affine differs from image" in report.lines()[0]


def test_an_unchanged_dataset_is_not_read_again_and_a_changed_file_is(tmp_path, monkeypatch):
    cases = _cases(tmp_path, 4)
    calls = []
    original = data_check._check_case
    monkeypatch.setattr(data_check, "_check_case", lambda *a: calls.append(a[1]) or original(*a))
    assert check_datalist(cases, MMWHS_CODES, workers=1).ok and sorted(calls) == [0, 1, 2, 3]
    calls.clear()
    assert check_datalist(cases, MMWHS_CODES, workers=1).ok and calls == []  # all four from the cache
    label = np.zeros((20, 20, 20), np.int16)
    label[0, 0, 0] = 421  # not an MM-WHS code
    nib.save(nib.Nifti1Image(label, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "case2_label.nii.gz")
    with pytest.raises(data_check.DataCheckError, match="case2_label.nii.gz: label values 421"):
        check_datalist(cases, MMWHS_CODES, workers=1)
    assert calls == [2]  # only the changed case was read again
