"""Bundle archives a user downloads with monai.bundle, and the model-zoo checks catching what they should."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from tests.conftest import REPO_ROOT
from xlstm_monai.phantoms import write_heart_phantoms
from xlstm_monai.release import package_bundles
from xlstm_monai.release.verify import SMOKE, check_large_files, check_references, check_style, check_version

BUNDLE = "heart_seg_ct"
TINY = SMOKE[BUNDLE]["network"]


def _copy_bundle(tmp_path):
    target = tmp_path / "bundles" / BUNDLE
    shutil.copytree(REPO_ROOT / "bundles" / BUNDLE, target, ignore=shutil.ignore_patterns("models", "eval", "data"))
    return target


def _tiny_weights(weights_dir):
    parser = ConfigParser()
    parser.read_config(str(REPO_ROOT / "bundles" / BUNDLE / "configs" / "inference.yaml"))
    parser.update(TINY)
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    (weights_dir / BUNDLE / "models").mkdir(parents=True)
    torch.save(network.state_dict(), weights_dir / BUNDLE / "models" / "model.pt")


def test_packaged_bundle_downloads_and_infers_in_a_fresh_folder(tmp_path):
    """Package -> monai.bundle download from a file:// release -> download_large_files -> run inference there."""
    _tiny_weights(tmp_path / "weights")
    release = tmp_path / "release"
    index = package_bundles(
        str(REPO_ROOT / "bundles"), str(release), names=[BUNDLE], weights_dir=str(tmp_path / "weights")
    )
    version = json.loads((REPO_ROOT / "bundles" / BUNDLE / "configs" / "metadata.json").read_text())["version"]
    entry = index[f"{BUNDLE}_v{version}"]
    archive = release / f"{BUNDLE}_v{version}.zip"
    assert entry["checksum"] == hashlib.md5(archive.read_bytes()).hexdigest()
    names = zipfile.ZipFile(archive).namelist()
    assert f"{BUNDLE}/configs/inference.yaml" in names and f"{BUNDLE}/LICENSE" in names
    assert f"{BUNDLE}/models/model.pt" in names  # the weights travel in the archive and through large_files.yml

    fresh = tmp_path / "user"
    fresh.mkdir()
    python = [sys.executable, "-m", "monai.bundle"]
    subprocess.run(
        python + ["download", "--name", BUNDLE, "--url", entry["source"], "--bundle_dir", str(fresh)],
        check=True,
        cwd=fresh,
        capture_output=True,
    )
    bundle = fresh / BUNDLE
    subprocess.run(
        python + ["download_large_files", "--bundle_path", str(bundle)], check=True, cwd=bundle, capture_output=True
    )
    assert (bundle / "models" / "model.pt").is_file()

    studies = tmp_path / "studies"
    write_heart_phantoms(str(studies), 2, "ct", (40, 36, 32), (4.0, 4.0, 4.0), seed=5)
    overrides = []
    for key, value in {**TINY, "dataset_dir": str(studies), "num_workers": 0}.items():
        overrides += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    run = subprocess.run(
        python + ["run", "inference", "--config_file", "configs/inference.yaml", *overrides],
        cwd=bundle,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    for image in sorted(studies.glob("*_image.nii.gz")):
        written = bundle / "eval" / image.name.replace(".nii.gz", "_seg.nii.gz")
        source, result = nib.load(image), nib.load(written)
        assert result.shape == source.shape
        np.testing.assert_allclose(result.affine, source.affine, atol=1e-4)
        assert set(np.unique(np.asarray(result.dataobj))) <= {0, 500, 600, 420, 550, 205, 820, 850}


def test_checks_pass_on_the_bundle_as_committed():
    bundle = REPO_ROOT / "bundles" / BUNDLE
    for check in (check_version, check_large_files, check_style, check_references):
        assert check(bundle)


def test_version_without_changelog_entry_is_caught(tmp_path):
    bundle = _copy_bundle(tmp_path)
    meta_file = bundle / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["version"] = "9.0.0"
    meta_file.write_text(json.dumps(meta, indent=4) + "\n")
    with pytest.raises(ValueError, match="9.0.0 has no changelog entry"):
        check_version(bundle)


def test_style_catches_a_float_yaml_reads_as_string_and_trailing_space(tmp_path):
    bundle = _copy_bundle(tmp_path)
    train = bundle / "configs" / "train.yaml"
    text = train.read_text().replace("learning_rate: 2.0e-4", "learning_rate: 2e-4   ")
    train.write_text(text)
    with pytest.raises(ValueError) as error:
        check_style(bundle)
    assert "learning_rate: '2e-4'" in str(error.value) and "trailing whitespace" in str(error.value)


def test_a_dangling_reference_in_an_overlay_is_caught(tmp_path):
    bundle = _copy_bundle(tmp_path)
    overlay = bundle / "configs" / "evaluate.yaml"
    overlay.write_text(overlay.read_text() + "extra: '@no_such_id'\n")
    with pytest.raises(ValueError, match="evaluate.yaml: @no_such_id is not defined"):
        check_references(bundle)


def test_large_files_entry_without_hash_is_caught(tmp_path):
    bundle = _copy_bundle(tmp_path)
    (bundle / "large_files.yml").write_text("large_files:\n  - path: models/model.pt\n    url: https://x/model.pt\n")
    with pytest.raises(ValueError, match="lacks"):
        check_large_files(bundle)


def test_cross_validation_record_adds_folds_of_the_same_recipe_and_drops_others():
    from xlstm_monai.release.models import merge_folds

    recipe = {"recipe": "fine_tune", "foundation": "abc", "iterations": 960, "learning_rate": 0.03, "seed": 0}
    earlier = [{**recipe, "fold": 0, "dice": 0.88}, {**recipe, "fold": 2, "dice": 0.89}]
    earlier.append({**recipe, "foundation": "older", "fold": 3, "dice": 0.70})  # another checkpoint: not this recipe
    fold1 = [{**recipe, "fold": 1, "dice": 0.87}]
    assert [r["fold"] for r in merge_folds(earlier, fold1)] == [0, 1, 2]
    rerun0 = [{**recipe, "fold": 0, "dice": 0.90}]  # a fold run again replaces its earlier record
    assert [r["dice"] for r in merge_folds(earlier, rerun0)] == [0.90, 0.89]
    longer = [{**recipe, "iterations": 1920, "fold": 1, "dice": 0.89}]  # a new schedule starts a new record
    assert merge_folds(earlier, longer) == longer


def test_another_schedule_never_writes_over_the_released_recipes_record(tmp_path):
    from xlstm_monai.release.models import _recipe, release_models

    with pytest.raises(ValueError, match="its own --output"):
        release_models(steps=("cross-validate",), epochs=_recipe()["epochs"] * 2, work_dir=str(tmp_path))


def test_kept_fold_models_are_scored_again_with_the_evaluation_as_shipped(tmp_path, monkeypatch):
    """The evaluate step scores each kept fold model with evaluate.yaml (no training), adds it to that fold's
    record, skips a fold whose model this machine lacks, and reads a scored fold back instead of scoring it again."""
    from xlstm_monai.bench import hippocampus_runs
    from xlstm_monai.release import models

    scored = []

    def fake_workflow(bundle, configs, workflow_type, **overrides):
        assert configs[-1] == "evaluate.yaml" and "epochs" not in overrides  # scored, never trained
        assert (Path(overrides["bundle_root"]) / "models" / "model.pt").read_bytes() == b"fold model"
        scored.append(overrides["fold"])
        out = Path(overrides["bundle_root"]) / "eval"
        out.mkdir(parents=True)
        out.joinpath("per_structure_metrics.csv").write_text(
            "structure,val_mean_dice,val_hd95\nanterior,0.9,1.0\nposterior,0.8,2.0\n"
        )

    monkeypatch.setattr(hippocampus_runs, "run_workflow", fake_workflow)
    monkeypatch.setattr(models, "shared_dataset", lambda name, data_dir: tmp_path / "data")
    work = tmp_path / "work"
    units = work / "cross_validation" / f"epochs{models._recipe()['epochs']}"  # the recipe's schedule
    units.mkdir(parents=True)
    (units / "fold1_model.pt").write_bytes(b"fold model")  # fold 0's model is not here
    record = tmp_path / "record.json"
    record.write_text(json.dumps({"runs": [{"fold": 0, "dice": 0.88}, {"fold": 1, "dice": 0.87}]}))

    for _ in range(2):
        models.release_models(steps=("evaluate",), folds=(0, 1), work_dir=str(work), output=str(record))
    runs = json.loads(record.read_text())["runs"]
    assert scored == [1]  # once: the second call read the cached unit back
    assert "shipped_evaluation" not in runs[0] and runs[1]["dice"] == 0.87  # the training-time figure stays
    assert runs[1]["shipped_evaluation"]["dice"] == pytest.approx(0.85)
    assert runs[1]["shipped_evaluation"]["mirror_axes"] == [0]  # what brain_hippocampus's evaluate.yaml says


def test_a_longer_schedule_trains_on_all_cases_ahead_of_the_recipe_and_is_never_installed(tmp_path, monkeypatch):
    """``--steps train --epochs N`` trains with that schedule in a unit of its own that resumes an interrupted run;
    installing a model whose schedule the recipe does not have is refused before anything runs."""
    import torch

    from xlstm_monai.release import models

    calls = []

    def fake_workflow(bundle, configs, workflow_type, **overrides):
        calls.append(overrides)
        (Path(overrides["bundle_root"]) / "models").mkdir(parents=True)
        torch.save({"model": {"w": torch.ones(2)}}, Path(overrides["bundle_root"]) / "models" / "last.pt")

    folds = {"training": [{"image": f"i{i}.nii.gz", "label": f"l{i}.nii.gz", "fold": i % 5} for i in range(10)]}
    monkeypatch.setattr(models, "build_datalist", lambda *args, **kwargs: folds)
    monkeypatch.setattr(models, "run_workflow", fake_workflow)
    monkeypatch.setattr(models, "shared_dataset", lambda name, data_dir: tmp_path / "data")
    work = tmp_path / "work"
    longer = models._recipe()["epochs"] * 2
    with pytest.raises(ValueError, match="recipes/bundles/brain_hippocampus.yaml"):
        models.release_models(steps=("train", "install-model"), epochs=longer, work_dir=str(work))
    assert calls == []
    for _ in range(2):
        models.release_models(steps=("train",), epochs=longer, work_dir=str(work), output=str(tmp_path / "r.json"))
    assert len(calls) == 1 and calls[0]["epochs"] == longer and calls[0]["resume"] is True
    unit = work / f"released_model_epochs{longer}"
    assert torch.load(unit / "model.pt", weights_only=True)["w"].tolist() == [1.0, 1.0]
    assert json.loads((unit / "record.json").read_text())["recipe"]["epochs"] == longer


def test_a_fold_model_is_released_from_the_recipes_schedule_units(tmp_path, monkeypatch):
    """--model_from foldN installs that fold's kept model from the units of the recipe's own schedule length."""
    import torch

    from xlstm_monai.release import models

    installed = []
    monkeypatch.setattr(models, "shared_dataset", lambda name, data_dir: tmp_path / "data")
    monkeypatch.setattr(models, "install", lambda file, bundle, name: installed.append(file) or file)
    units = tmp_path / "work" / "cross_validation" / f"epochs{models._recipe()['epochs']}"
    units.mkdir(parents=True)
    torch.save({"model": {"w": torch.zeros(3)}}, units / "fold0_model.pt")
    models.release_models(
        steps=("install-model",), model_from="fold0", work_dir=str(tmp_path / "work"), output=str(tmp_path / "r.json")
    )
    assert installed == [units / "fold0_released.pt"]
    assert torch.load(installed[0], weights_only=True)["w"].tolist() == [0.0, 0.0, 0.0]
