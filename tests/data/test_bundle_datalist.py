"""The datalist of a bundle run: the forms users have, phantoms only in the bundle's own folder, clear errors."""

from __future__ import annotations

import json
import os

import pytest
from monai.data import load_decathlon_datalist

from xlstm_monai.data import DatalistError, datalist_split, default_datalist, input_files, prepare_datalist
from xlstm_monai.phantoms import write_heart_phantoms, write_hippocampus_phantoms


def test_generates_phantoms_in_the_bundles_own_folder_once_and_reuses_them(tmp_path):
    folder, datalist = tmp_path / "phantoms", tmp_path / "lists" / "datalist.json"
    path = prepare_datalist(
        str(folder),
        str(datalist),
        "heart_mr",
        num_phantoms=3,
        shape=(32, 32, 32),
        spacing=(4.5, 4.5, 4.5),
        phantom_dir=str(folder),
    )
    cases = load_decathlon_datalist(path, True, "training", str(folder))
    assert len(cases) == 3 and all(c["image"].endswith("_image.nii.gz") and c["modality"] == "MRI" for c in cases)
    assert json.loads((folder / "PHANTOMS.json").read_text())["kind"] == "heart_mr"
    stamp = datalist.stat().st_mtime_ns
    prepare_datalist(str(folder), str(datalist), "heart_mr", num_phantoms=3, phantom_dir=str(folder))
    assert datalist.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("create", [False, True], ids=["missing", "empty"])
def test_a_users_dataset_dir_that_is_missing_or_empty_is_an_error_naming_it(tmp_path, create):
    typo = tmp_path / "mmwsh"
    if create:
        typo.mkdir()
    with pytest.raises(FileNotFoundError, match=f"dataset_dir {typo} (is empty|does not exist)"):
        prepare_datalist(str(typo), str(tmp_path / "datalist.json"), "heart_ct", phantom_dir=str(tmp_path / "own"))
    assert sorted(os.listdir(tmp_path)) == (["mmwsh"] if create else [])  # no phantoms, no datalist
    if create:
        assert os.listdir(typo) == []


def test_a_users_dataset_gets_a_datalist_and_no_phantoms(tmp_path):
    data = tmp_path / "mmwhs"
    write_heart_phantoms(str(data), 3, "ct", (32, 32, 32), (4.5, 4.5, 4.5), first_id=1001)  # stands in for real data
    before = sorted(p.name for p in data.iterdir())
    datalist = default_datalist(tmp_path / "bundle", data)
    prepare_datalist(str(data), datalist, "heart_ct", num_phantoms=12, phantom_dir=str(tmp_path / "own"))
    assert sorted(p.name for p in data.iterdir()) == before  # nothing written into the user's folder
    assert datalist.startswith(str(tmp_path / "bundle" / "data" / "datalists" / "mmwhs_"))
    assert len(json.loads(open(datalist).read())["training"]) == 3


def test_a_folder_without_a_dataset_is_an_error_and_stays_untouched(tmp_path):
    (tmp_path / "notes.txt").write_text("not images")
    with pytest.raises(DatalistError, match=f"dataset_dir {tmp_path} holds no dataset"):
        prepare_datalist(str(tmp_path), str(tmp_path / "out" / "datalist.json"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_datalist_built_for_another_folder_is_an_error_naming_both(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        write_heart_phantoms(str(folder), 3, "ct", (32, 32, 32), (4.5, 4.5, 4.5))
    datalist = str(tmp_path / "datalist.json")
    prepare_datalist(str(first), datalist, "heart_ct")
    with pytest.raises(DatalistError, match=f"built for {first}, not for dataset_dir {second}"):
        prepare_datalist(str(second), datalist, "heart_ct")


def test_brain_phantoms_give_a_classification_datalist(tmp_path):
    folder = tmp_path / "brains"
    prepare_datalist(
        str(folder),
        str(tmp_path / "datalist.json"),
        "brain",
        num_phantoms=6,
        shape=(32, 40, 32),
        spacing=(5.0, 5.0, 5.0),
        phantom_dir=str(folder),
    )
    training = json.loads((tmp_path / "datalist.json").read_text())["training"]
    assert len(training) == 6 and {c["label_name"] for c in training} == {"CN", "AD"}


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """An MSD Task04 folder of 10 cases."""
    folder = tmp_path_factory.mktemp("task04")
    write_hippocampus_phantoms(str(folder), 10, (16, 20, 16))
    return folder


def _pairs(task, names):
    return [{"image": f"imagesTr/{n}", "label": f"labelsTr/{n}"} for n in names]


def test_a_model_zoo_datalist_uses_its_validation_section(task, tmp_path):
    names = sorted(os.listdir(task / "imagesTr"))
    path = tmp_path / "dataset_0.json"
    path.write_text(json.dumps({"training": _pairs(task, names[:7]), "validation": _pairs(task, names[7:])}))
    split = datalist_split(path, task, fold=3)
    assert len(split["train"]) == 7 and len(split["val"]) == 3
    assert split["val"][0]["image"] == str(task / "imagesTr" / names[7])


def test_an_msd_dataset_json_and_a_plain_training_list_get_reproducible_folds(task, tmp_path):
    split = datalist_split(task / "dataset.json", task, fold=1, num_folds=5)
    assert len(split["train"]) == 8 and len(split["val"]) == 2
    names = sorted(os.listdir(task / "imagesTr"))
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"training": _pairs(task, names)}))
    again = datalist_split(plain, task, fold=1, num_folds=5)
    assert [c["image"] for c in again["val"]] == [c["image"] for c in split["val"]]  # same rule, same split
    other = datalist_split(plain, task, fold=2, num_folds=5)
    assert not {c["image"] for c in other["val"]} & {c["image"] for c in split["val"]}


def test_a_fold_datalist_uses_its_folds(task, tmp_path):
    names = sorted(os.listdir(task / "imagesTr"))
    path = tmp_path / "folds.json"
    path.write_text(json.dumps({"training": [dict(e, fold=i % 2) for i, e in enumerate(_pairs(task, names))]}))
    split = datalist_split(path, task, fold=1)
    assert len(split["val"]) == 5 and all(c["fold"] == 1 for c in split["val"])


@pytest.mark.parametrize(
    ("text", "name", "message"),
    [
        (
            '{"training": [{"image": "a.nii.gz", "label": "b.nii.gz"},]}',
            "bad.json",
            "is not valid JSON: .* at line 1 column",
        ),
        ("training:\n  - image: a\n   label: b\n", "bad.yaml", "is not valid YAML: .* at line 3 column"),
        ('[{"image": "a.nii.gz"}]', "list.json", "holds a list, expected a MONAI datalist"),
        ('{"testing": [{"image": "a.nii.gz"}]}', "test_only.json", "has no 'training' list"),
        ('{"training": [{"image": "a.nii.gz"}]}', "no_labels.json", "'training' entry a.nii.gz has no 'label'"),
    ],
)
def test_an_unusable_datalist_is_one_line_naming_the_file(tmp_path, text, name, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DatalistError, match=message) as error:
        datalist_split(path, tmp_path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_inference_inputs_of_a_mistyped_folder_are_an_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"dataset_dir {tmp_path / 'nope'} does not exist"):
        input_files(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="matches input_pattern '\\*.nii.gz'"):
        input_files(tmp_path)
