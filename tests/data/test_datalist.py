"""Tests of the datalist builder: layouts, folds, few-label subsets, CSV errors and MONAI round trips."""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.data import load_decathlon_datalist
from monai.transforms import LoadImaged

from xlstm_monai.data.datalist import (
    apply_label_fraction,
    assign_folds,
    build_datalist,
    fold_split,
    normalize_modality,
    read_msd,
    read_participants_csv,
    scan_images,
    scan_mmwhs,
    scan_paired,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("XLSTM_MONAI_DATA") or REPO_ROOT.parent / "shared" / "data")


def touch(path: Path) -> Path:
    """An empty file, where only the name matters."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def nifti(path: Path, value: int = 0) -> Path:
    """A tiny readable 8x8x8 NIfTI."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.full((8, 8, 8), value, dtype=np.uint8), np.eye(4)), str(path))
    return path


def make_mmwhs(root: Path, make=touch) -> Path:
    for n in (1001, 1002, 1003):
        make(root / "ct" / f"ct_train_{n}_image.nii.gz")
        make(root / "ct" / f"ct_train_{n}_label.nii.gz")
        make(root / "mr" / f"mr_train_{n}_image.nii.gz")
        make(root / "mr" / f"mr_train_{n}_label.nii")
    make(root / "ct_test_2001_image.nii.gz")
    (root / "README.txt").write_text("not an image")
    return root


def fake_cases(n: int, classes: int | None = None) -> list[dict]:
    cases = [
        {"image": f"/data/case_{i:03d}.nii.gz", "label": f"/data/labels/case_{i:03d}.nii.gz", "modality": "MRI"}
        for i in range(n)
    ]
    if classes:
        for i, case in enumerate(cases):
            case["label"] = i % classes
    return cases


def labeled_images(cases) -> set[str]:
    return {c["image"] for c in cases}


# ---------------------------------------------------------------------------------------------------------------
# layouts
# ---------------------------------------------------------------------------------------------------------------


def test_mmwhs_pairs_by_stem_and_tags_modality(tmp_path):
    root = make_mmwhs(tmp_path / "mmwhs")
    labeled, unlabeled = scan_mmwhs(root)
    assert len(labeled) == 6
    for case in labeled:
        stem = Path(case["image"]).name.replace("_image.nii.gz", "")
        assert Path(case["label"]).name.startswith(stem + "_label")
        assert case["modality"] == ("CT" if stem.startswith("ct") else "MRI")
        assert os.path.isabs(case["image"]) and os.path.isabs(case["label"])
    assert [Path(c["image"]).name for c in unlabeled] == ["ct_test_2001_image.nii.gz"]
    assert unlabeled[0]["modality"] == "CT"


def test_mmwhs_label_without_image_names_the_file(tmp_path):
    root = make_mmwhs(tmp_path / "mmwhs")
    touch(root / "mr_train_1009_label.nii.gz")
    with pytest.raises(ValueError, match="mr_train_1009_label.nii.gz"):
        scan_mmwhs(root)


def test_empty_and_missing_folders_are_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"empty.*ct_train_1001_image"):
        scan_mmwhs(empty)
    with pytest.raises(ValueError, match="no images"):
        scan_images(empty, "CT")
    with pytest.raises(ValueError, match="no cases|no images"):
        build_datalist(str(empty), str(tmp_path / "out.json"), modality="CT")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        scan_mmwhs(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_datalist(str(tmp_path / "nowhere"), str(tmp_path / "out.json"))


def test_msd_reads_training_and_test(tmp_path):
    root = tmp_path / "Task04"
    for i in (1, 2, 3):
        touch(root / "imagesTr" / f"h_{i}.nii.gz")
        touch(root / "labelsTr" / f"h_{i}.nii.gz")
    touch(root / "imagesTs" / "h_9.nii.gz")
    touch(root / "imagesTs" / "h_10.nii.gz")
    dataset = {
        "name": "Hippo",
        "modality": {"0": "MR"},
        "labels": {"0": "background", "1": "a"},
        "training": [{"image": f"./imagesTr/h_{i}.nii.gz", "label": f"./labelsTr/h_{i}.nii.gz"} for i in (1, 2, 3)],
        "test": ["./imagesTs/h_9.nii.gz", {"image": "./imagesTs/h_10.nii.gz"}],
    }
    (root / "dataset.json").write_text(json.dumps(dataset))
    training, test = read_msd(root)
    assert [Path(c["image"]).name for c in training] == ["h_1.nii.gz", "h_2.nii.gz", "h_3.nii.gz"]
    assert all(c["modality"] == "MRI" and os.path.isfile(c["label"]) for c in training)
    assert [Path(c["image"]).name for c in test] == ["h_9.nii.gz", "h_10.nii.gz"]
    assert read_msd(root / "dataset.json")[0] == training

    dl = build_datalist(str(root), str(tmp_path / "msd.json"), num_folds=3)
    assert dl["kind"] == "msd" and dl["name"] == "Hippo" and dl["labels"]["1"] == "a"
    assert len(dl["training"]) == 3 and len(dl["testing"]) == 2

    (root / "labelsTr" / "h_2.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="h_2.nii.gz"):
        read_msd(root)


def test_msd_modality_mapping():
    assert normalize_modality("T1w") == normalize_modality("FLAIR") == normalize_modality("mr") == "MRI"
    assert normalize_modality("ct") == "CT"
    with pytest.raises(ValueError, match="PET"):
        normalize_modality("PET")


def test_paired_folders_pair_by_name(tmp_path):
    root = tmp_path / "paired"
    for name in ("b.nii.gz", "a.nii.gz", "c.nii"):
        touch(root / "imagesTr" / name)
        touch(root / "labelsTr" / name)
    touch(root / "imagesTr" / "d.nii.gz")  # no label: an image to predict
    touch(root / "imagesTr" / "._a.nii.gz")  # hidden resource fork, ignored
    cases = scan_paired(root, modality="T2")
    assert [Path(c["image"]).name for c in cases] == ["a.nii.gz", "b.nii.gz", "c.nii", "d.nii.gz"]
    assert all(Path(c["image"]).name == Path(c["label"]).name for c in cases if "label" in c)
    assert "label" not in cases[-1] and {c["modality"] for c in cases} == {"MRI"}

    dl = build_datalist(str(root), str(tmp_path / "paired.json"), num_folds=3)
    assert dl["kind"] == "paired" and len(dl["training"]) == 3
    assert [e["image"] for e in dl["testing"]] == ["imagesTr/d.nii.gz"]

    touch(root / "labelsTr" / "orphan.nii.gz")
    with pytest.raises(ValueError, match="orphan.nii.gz"):
        scan_paired(root)


def test_scan_images_is_recursive_and_sorted(tmp_path):
    root = tmp_path / "unlabeled"
    for name in ("z/s2.nii.gz", "a/s1.nii", "top.nii.gz"):
        touch(root / name)
    touch(root / "notes.txt")
    images = scan_images(root, "ct")
    assert [Path(c["image"]).relative_to(root).as_posix() for c in images] == ["a/s1.nii", "top.nii.gz", "z/s2.nii.gz"]
    assert {c["modality"] for c in images} == {"CT"}


# ---------------------------------------------------------------------------------------------------------------
# folds and label fractions
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,k", [(10, 5), (11, 5), (23, 4), (5, 5)])
def test_folds_are_balanced(n, k):
    folds = Counter(c["fold"] for c in assign_folds(fake_cases(n), num_folds=k, seed=3))
    assert set(folds) == set(range(k))
    assert max(folds.values()) - min(folds.values()) <= 1


def test_folds_depend_on_ids_and_seed_only(tmp_path):
    # Same files created in opposite orders in two folders: same folds.
    names = [f"ct_train_{1000 + i}" for i in range(12)]
    results = []
    for folder, order in (("first", names), ("second", names[::-1])):
        for stem in order:
            touch(tmp_path / folder / f"{stem}_image.nii.gz")
            touch(tmp_path / folder / f"{stem}_label.nii.gz")
        labeled, _ = scan_mmwhs(tmp_path / folder)
        results.append({Path(c["image"]).name: c["fold"] for c in assign_folds(labeled[::-1], 4, seed=7)})
    assert results[0] == results[1]

    cases = fake_cases(40)
    by_seed = [[c["fold"] for c in assign_folds(cases, 5, seed=s)] for s in (0, 0, 1)]
    assert by_seed[0] == by_seed[1]
    assert by_seed[0] != by_seed[2]


def test_folds_stratify_by_class():
    cases = fake_cases(30, classes=1)
    for case in cases[:9]:
        case["label"] = 1  # 9 of class 1, 21 of class 0
    folded = assign_folds(cases, num_folds=3, seed=0, stratify_key="label")
    per_fold = Counter((c["fold"], c["label"]) for c in folded)
    assert [per_fold[(f, 1)] for f in range(3)] == [3, 3, 3]
    assert [per_fold[(f, 0)] for f in range(3)] == [7, 7, 7]


def test_too_few_cases_for_folds():
    with pytest.raises(ValueError, match="5 folds need at least 5 cases"):
        assign_folds(fake_cases(4), num_folds=5)


def test_label_fractions_are_nested_and_keep_validation_fold():
    folded = assign_folds(fake_cases(50), num_folds=5, seed=2)
    previous = set()
    for fraction in (0.1, 0.3, 0.5, 1.0):
        labeled, unlabeled = apply_label_fraction(folded, fraction, fold=1, seed=2)
        assert len(labeled) + len(unlabeled) == 50
        kept = labeled_images(labeled)
        assert previous <= kept
        previous = kept
        counts = Counter(c["fold"] for c in labeled)
        assert counts[1] == 10  # the validation fold stays fully labeled
        assert all(counts[f] == max(1, round(fraction * 10)) for f in (0, 2, 3, 4))
        assert all(set(u) == {"image", "modality", "fold"} and u["fold"] != 1 for u in unlabeled)
    assert apply_label_fraction(folded, 1.0)[1] == []
    # Cases keep their label at least one per fold, and a different seed picks other ones.
    assert Counter(c["fold"] for c in apply_label_fraction(folded, 0.01, fold=0)[0])[3] == 1
    assert labeled_images(apply_label_fraction(folded, 0.3, seed=0)[0]) != labeled_images(
        apply_label_fraction(folded, 0.3, seed=5)[0]
    )
    for bad in (0, -0.5, 1.5):
        with pytest.raises(ValueError, match="label_fraction"):
            apply_label_fraction(folded, bad)


def test_fold_split():
    datalist = [{"image": str(i), "fold": i % 2} for i in range(6)] + [{"image": "extra"}]
    val = fold_split(datalist, 0, "val")
    train = fold_split(datalist, 0, "train")
    assert [e["image"] for e in val] == ["0", "2", "4"]
    assert [e["image"] for e in train] == ["1", "3", "5", "extra"]  # fold-less entries only ever train
    with pytest.raises(ValueError, match="fold 3 has no cases in a datalist with 2 folds"):
        fold_split(datalist, 3, "val")
    with pytest.raises(ValueError, match="unknown role"):
        fold_split(datalist, 0, "test")
    with pytest.raises(ValueError, match="no training cases"):
        fold_split([{"image": "a", "fold": 0}], 0, "train")


# ---------------------------------------------------------------------------------------------------------------
# datalist file
# ---------------------------------------------------------------------------------------------------------------


def test_build_datalist_round_trip(tmp_path, capsys):
    root = make_mmwhs(tmp_path / "mmwhs", make=nifti)
    extra = tmp_path / "more"
    nifti(extra / "x.nii.gz")
    output = tmp_path / "elsewhere" / "deep" / "datalist.json"
    dl = build_datalist(str(root), str(output), num_folds=3, seed=1, label_fraction=0.5, unlabeled=[f"{extra}:CT"])
    assert dl["kind"] == "mmwhs" and dl["labels"]["500"] == "left_ventricle"
    on_disk = json.loads(output.read_text())
    assert on_disk == dl
    assert (dl["num_folds"], dl["seed"], dl["label_fraction"]) == (3, 1, 0.5)
    assert len(dl["training"]) + len(dl["unlabeled"]) == 6 + 1
    assert [e["image"] for e in dl["testing"]] == ["ct_test_2001_image.nii.gz"]
    stored = [e["image"] for k in ("training", "unlabeled") for e in dl[k]]
    assert all("\\" not in path and not os.path.isabs(path) for path in stored)
    assert Counter(e["modality"] for e in dl["training"] if e["fold"] == 0) == {"CT": 1, "MRI": 1}  # stratified
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in printed] == ["training", "unlabeled", "testing"]

    for key in ("training", "unlabeled", "testing"):
        items = load_decathlon_datalist(str(output), data_list_key=key, base_dir=str(root))
        assert items and all(os.path.isfile(i["image"]) for i in items)
        assert all(os.path.isfile(i["label"]) for i in items if "label" in i)
    train = fold_split(load_decathlon_datalist(str(output), base_dir=str(root)), 0, "train")
    loaded = LoadImaged(keys=["image", "label"])(train[0])
    assert tuple(loaded["image"].shape) == (8, 8, 8)

    # An explicit base_dir changes the stored paths, not what they resolve to.
    other = build_datalist(str(root), str(output), num_folds=3, seed=1, base_dir=str(tmp_path))
    assert other["training"][0]["image"].startswith("mmwhs/")
    items = load_decathlon_datalist(str(output), base_dir=str(tmp_path))
    assert all(os.path.isfile(i["image"]) and os.path.isfile(i["label"]) for i in items)


def test_build_datalist_plain_images_and_errors(tmp_path):
    root = tmp_path / "pretrain"
    for i in range(4):
        touch(root / f"s{i}.nii.gz")
    with pytest.raises(ValueError, match="modality"):
        build_datalist(str(root), str(tmp_path / "a.json"))
    dl = build_datalist(str(root), str(tmp_path / "a.json"), modality="MRI", num_folds=2)
    assert dl["kind"] == "images" and dl["training"] == [] and len(dl["unlabeled"]) == 4
    assert sorted(Counter(e["fold"] for e in dl["unlabeled"]).values()) == [2, 2]
    with pytest.raises(ValueError, match="unknown kind"):
        build_datalist(str(root), str(tmp_path / "a.json"), kind="dicom")
    with pytest.raises(ValueError, match="fold 7"):
        build_datalist(str(root), str(tmp_path / "a.json"), modality="CT", fold=7)


# ---------------------------------------------------------------------------------------------------------------
# CSV participant tables
# ---------------------------------------------------------------------------------------------------------------


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def test_csv_with_id_prefix_and_string_classes(tmp_path):
    for sid in ("S01", "S02", "S03", "S04", "S010"):
        touch(tmp_path / "images" / f"{sid}-T1.nii.gz")
    table = write_csv(
        tmp_path / "participants.csv",
        [["MRID", "Diagnosis"], ["S01", "AD"], ["S02", "CN"], ["S03", "CN"], ["S04", "AD"]],
    )
    cases = read_participants_csv(table, "Diagnosis", "CN,AD", id_column="MRID")
    assert [(Path(c["image"]).name, c["label"], c["label_name"]) for c in cases] == [
        ("S01-T1.nii.gz", 1, "AD"),
        ("S02-T1.nii.gz", 0, "CN"),
        ("S03-T1.nii.gz", 0, "CN"),
        ("S04-T1.nii.gz", 1, "AD"),
    ]  # S01 does not match S010
    dl = build_datalist(
        str(table), str(tmp_path / "out" / "dl.json"), target="Diagnosis", classes=("CN", "AD"), num_folds=2
    )
    assert dl["kind"] == "csv" and dl["labels"] == {"0": "CN", "1": "AD"}
    assert all(Counter(e["label"] for e in dl["training"] if e["fold"] == f) == {0: 1, 1: 1} for f in (0, 1))
    items = load_decathlon_datalist(str(tmp_path / "out" / "dl.json"), base_dir=str(tmp_path))
    assert all(os.path.isfile(i["image"]) and isinstance(i["label"], int) for i in items)


def test_csv_with_image_column(tmp_path):
    touch(tmp_path / "scans" / "a.nii.gz")
    touch(tmp_path / "scans" / "b.nii")
    table = write_csv(tmp_path / "t.csv", [["path", "Sex"], ["scans/a.nii.gz", "F"], ["scans/b.nii", "M"]])
    cases = read_participants_csv(table, "Sex", ["F", "M"], image_column="path")
    assert [c["label"] for c in cases] == [0, 1] and all(os.path.isfile(c["image"]) for c in cases)


def test_csv_collects_every_problem_with_its_row(tmp_path):
    touch(tmp_path / "images" / "P1_t1.nii.gz")
    touch(tmp_path / "images" / "P2_t1.nii.gz")
    touch(tmp_path / "images" / "P5_a.nii.gz")
    touch(tmp_path / "images" / "P5_b.nii.gz")
    table = write_csv(
        tmp_path / "p.csv",
        [
            ["ID", "Sex"],
            ["P1", "F"],  # row 2: fine
            ["P2", "X"],  # row 3: unknown class
            ["P3", "M"],  # row 4: no image
            ["P1", ""],  # row 5: empty target and image of row 2 again
            ["P5", "M"],  # row 6: ambiguous image
        ],
    )
    with pytest.raises(ValueError) as error:
        read_participants_csv(table, "Sex", "F,M", id_column="ID")
    lines = str(error.value).splitlines()[1:]
    assert any("row 3" in line and "'X'" in line for line in lines)
    assert any("row 4" in line and "'P3'" in line for line in lines)
    assert any("row 5" in line and "empty Sex" in line for line in lines)
    assert any("row 5" in line and "row 2" in line for line in lines)
    assert any("row 6" in line and "P5_a.nii.gz" in line and "P5_b.nii.gz" in line for line in lines)
    assert not any("row 2:" in line for line in lines)

    with pytest.raises(ValueError, match="no target column 'Age'"):
        read_participants_csv(table, "Age", "F,M", id_column="ID")
    with pytest.raises(ValueError, match="at least two distinct"):
        read_participants_csv(table, "Sex", "F", id_column="ID")
    missing = write_csv(tmp_path / "m.csv", [["path", "Sex"], ["scans/nope.nii.gz", "F"]])
    with pytest.raises(ValueError, match=r"row 2: image 'scans/nope.nii.gz' not found"):
        read_participants_csv(missing, "Sex", "F,M", image_column="path")


# ---------------------------------------------------------------------------------------------------------------
# real data (../shared/data or $XLSTM_MONAI_DATA)
# ---------------------------------------------------------------------------------------------------------------


def real(name: str) -> Path:
    folder = DATA_DIR / name
    if not folder.is_dir():
        pytest.skip(f"real data folder {folder} is absent (set XLSTM_MONAI_DATA to the shared data folder)")
    return folder


@pytest.mark.realdata
def test_real_msd_hippocampus(tmp_path):
    folder = real("msd_hippocampus")
    output = tmp_path / "hippo.json"
    dl = build_datalist(str(folder), str(output))
    assert dl["kind"] == "msd" and len(dl["training"]) == 200
    assert Counter(e["fold"] for e in dl["training"]) == {f: 40 for f in range(5)}
    items = load_decathlon_datalist(str(output), base_dir=str(folder))
    assert all(os.path.isfile(i["image"]) and os.path.isfile(i["label"]) for i in items)
    assert {i["modality"] for i in items} == {"MRI"}


@pytest.mark.realdata
def test_real_ixi_sex(tmp_path):
    folder = real("ixi_t1")
    table = folder / "participants.csv"
    with open(table, newline="") as handle:
        expected = {row["MRID"]: row["Sex"] for row in csv.DictReader(handle)}
    cases = read_participants_csv(table, "Sex", "F,M")  # MRID is found as the ID column
    assert len(cases) == 10
    for case in cases:
        mrid = next(m for m in expected if Path(case["image"]).name.startswith(m))
        assert case["label_name"] == expected[mrid] and case["label"] == ["F", "M"].index(expected[mrid])
    output = tmp_path / "ixi.json"
    build_datalist(str(table), str(output), target="Sex", classes="F,M", num_folds=3)
    items = load_decathlon_datalist(str(output), base_dir=str(folder))
    assert len(items) == 10 and all(os.path.isfile(i["image"]) for i in items)


@pytest.mark.realdata
def test_real_sunnybrook_paired(tmp_path):
    folder = real("sunnybrook_lv_mri")
    cases = scan_paired(folder)
    assert len(cases) == 4 and all("label" in c for c in cases)
    dl = build_datalist(str(folder), str(tmp_path / "sb.json"), num_folds=2)
    assert dl["kind"] == "paired" and Counter(e["fold"] for e in dl["training"]) == {0: 2, 1: 2}
