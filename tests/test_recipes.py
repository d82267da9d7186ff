"""The bundles' configs are rendered from recipes/: they agree with their sources, and drift is caught."""

from __future__ import annotations

import shutil

import pytest
import yaml

from tests.conftest import REPO_ROOT
from xlstm_monai.dev.recipes import render_configs

RECIPES, BUNDLES = REPO_ROOT / "recipes", REPO_ROOT / "bundles"


def test_every_config_agrees_with_its_recipe_sources():
    assert render_configs(RECIPES, BUNDLES, check=True) == []


def test_every_config_of_every_bundle_comes_from_a_recipe():
    rendered = {
        f"{p.stem}/{config}"
        for p in (RECIPES / "bundles").glob("*.yaml")
        for config in yaml.safe_load(p.read_text())["configs"]
    }
    present = {f"{p.parent.parent.name}/{p.name}" for p in BUNDLES.glob("*/configs/*") if p.name != "metadata.json"}
    assert present == rendered


def test_an_edited_config_is_reported_and_rendering_restores_it(tmp_path):
    bundles = tmp_path / "bundles"
    shutil.copytree(BUNDLES, bundles, ignore=shutil.ignore_patterns("models", "data", "eval", "logs"))
    config = bundles / "heart_seg_mri" / "configs" / "train.yaml"
    original = config.read_text()
    config.write_text(original.replace("learning_rate: 2.0e-4", "learning_rate: 1.0e-3"))
    assert render_configs(RECIPES, bundles, check=True) == [str(config)]
    assert config.read_text() != original  # --check only reports
    assert render_configs(RECIPES, bundles) == [str(config)] and config.read_text() == original


def test_a_setting_missing_from_a_bundles_recipe_is_an_error_naming_it(tmp_path):
    recipes = tmp_path / "recipes"
    shutil.copytree(RECIPES, recipes)
    recipe = recipes / "bundles" / "brain_hippocampus.yaml"
    recipe.write_text(recipe.read_text().replace("  roi_size:", "  roi_size_typo:"))
    with pytest.raises(KeyError, match="setting 'roi_size' is not in the bundle's recipe file"):
        render_configs(recipes, tmp_path / "out", names=["brain_hippocampus"])


def test_a_configs_header_names_every_source_it_was_read_from():
    header = (BUNDLES / "heart_seg_ct" / "configs" / "train.yaml").read_text().split("\n# Trains")[0]
    sources = [line.removeprefix("#   ") for line in header.splitlines() if line.startswith("#   ")]
    assert sources[0] == "recipes/segmentation/train.yaml.j2" and sources[-1] == "recipes/bundles/heart_seg_ct.yaml"
    for extended_or_included in (
        "common/train.yaml.j2",
        "segmentation/_preprocessing.yaml.j2",
        "common/_encoder.yaml.j2",
    ):
        assert f"recipes/{extended_or_included}" in sources
    assert all((REPO_ROOT / source).is_file() for source in sources)
