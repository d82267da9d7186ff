from __future__ import annotations

import json

import pytest
from monai.data import load_decathlon_datalist

from xlstm_monai.data import prepare_datalist
from xlstm_monai.data.phantoms import write_heart_phantoms


def test_generates_phantoms_once_and_reuses_them(tmp_path):
    folder, datalist = tmp_path / "phantoms", tmp_path / "phantoms" / "datalist.json"
    path = prepare_datalist(str(folder), str(datalist), "heart_mr", num_phantoms=3, shape=(32, 32, 32),
                            spacing=(4.5, 4.5, 4.5))
    cases = load_decathlon_datalist(path, True, "training", str(folder))
    assert len(cases) == 3 and all(c["image"].endswith("_image.nii.gz") and c["modality"] == "MRI" for c in cases)
    assert json.loads((folder / "PHANTOMS.json").read_text())["kind"] == "heart_mr"
    stamp = datalist.stat().st_mtime_ns
    prepare_datalist(str(folder), str(datalist), "heart_mr", num_phantoms=3)
    assert datalist.stat().st_mtime_ns == stamp


def test_a_users_dataset_gets_a_datalist_and_no_phantoms(tmp_path):
    data = tmp_path / "mmwhs"
    write_heart_phantoms(str(data), 3, "ct", (32, 32, 32), (4.5, 4.5, 4.5), first_id=1001)  # stands in for real data
    before = sorted(p.name for p in data.iterdir())
    datalist = tmp_path / "lists" / "mmwhs.json"
    prepare_datalist(str(data), str(datalist), "heart_ct", num_phantoms=12)
    assert sorted(p.name for p in data.iterdir()) == before  # nothing written into the user's folder
    assert len(json.loads(datalist.read_text())["training"]) == 3


def test_an_unreadable_folder_is_an_error_and_stays_untouched(tmp_path):
    (tmp_path / "notes.txt").write_text("not images")
    with pytest.raises(ValueError):
        prepare_datalist(str(tmp_path), str(tmp_path / "out" / "datalist.json"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_missing_data_without_phantoms_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="generate_phantoms"):
        prepare_datalist(str(tmp_path / "x"), str(tmp_path / "x" / "datalist.json"), generate_phantoms=False)


def test_brain_phantoms_give_a_classification_datalist(tmp_path):
    folder = tmp_path / "brains"
    prepare_datalist(str(folder), str(folder / "datalist.json"), "brain", num_phantoms=6, shape=(32, 40, 32),
                     spacing=(5.0, 5.0, 5.0))
    training = json.loads((folder / "datalist.json").read_text())["training"]
    assert len(training) == 6 and {c["label_name"] for c in training} == {"CN", "AD"}
