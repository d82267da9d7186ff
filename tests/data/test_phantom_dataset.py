from __future__ import annotations

import json

import pytest
from monai.data import load_decathlon_datalist

from xlstm_monai.data import prepare_phantom_dataset


def test_generates_once_and_reuses(tmp_path):
    folder, datalist = tmp_path / "phantoms", tmp_path / "phantoms" / "datalist.json"
    path = prepare_phantom_dataset(str(folder), str(datalist), "heart_mr", num_cases=3, shape=(32, 32, 32),
                                   spacing=(4.5, 4.5, 4.5))
    cases = load_decathlon_datalist(path, True, "training", str(folder))
    assert len(cases) == 3 and all(c["image"].endswith("_image.nii.gz") for c in cases)
    assert json.loads((folder / "PHANTOMS.json").read_text())["kind"] == "heart_mr"
    stamp = datalist.stat().st_mtime_ns
    prepare_phantom_dataset(str(folder), str(datalist), "heart_mr", num_cases=3)
    assert datalist.stat().st_mtime_ns == stamp


def test_never_writes_into_a_folder_of_real_data(tmp_path):
    (tmp_path / "patient1.nii.gz").write_bytes(b"real data")
    with pytest.raises(ValueError, match="already holds files"):
        prepare_phantom_dataset(str(tmp_path), str(tmp_path / "datalist.json"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["patient1.nii.gz"]


def test_missing_datalist_without_generation_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="xlstm-monai datalist"):
        prepare_phantom_dataset(str(tmp_path / "x"), str(tmp_path / "x" / "datalist.json"), enabled=False)
