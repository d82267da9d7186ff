"""Every segmentation bundle as a MONAI Label model over phantom studies: /info, the best model as the default,
/infer, a /train round; and, for heart_seg_ct, epistemic scoring that offers the least certain study next."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from tests.conftest import REPO_ROOT, SHARED_DATA
from tests.integration.monailabel_server import (
    api,
    monailabel_server,
    server_log,
    small_network,
    train,
    write_small_bundle,
)
from xlstm_monai.data import MMWHS_CODES
from xlstm_monai.phantoms import write_heart_phantoms, write_hippocampus_phantoms
from xlstm_monai.presets import SMALL, TINY, overrides

pytestmark = pytest.mark.monailabel

HEART = {**overrides(SMALL, feature_size=16), "roi_size": [48, 48, 48], "spacing": [3.0, 3.0, 3.0], "num_workers": 0}
BUNDLES = {
    # shrunk network and grid; training extras; labeled and unlabeled studies
    "heart_seg_ct": (HEART, {"num_samples": 1}, 3, 2),
    "heart_seg_mri": (HEART, {"num_samples": 1}, 3, 1),
    "brain_hippocampus": ({**overrides(TINY, feature_size=8), "num_workers": 0}, {"batch_size": 2}, 3, 1),
}


def write_studies(bundle: str, studies: Path, labeled: int, unlabeled: int) -> list[str]:
    """MONAI Label's local datastore: images in the folder, labels of the same file name in labels/final/, as channel
    indices (what 3D Slicer saves); returns the study ids, the labeled ones first."""
    final = studies / "labels" / "final"
    final.mkdir(parents=True)
    if bundle == "brain_hippocampus":  # MSD Task04 layout: labels are channel indices already
        task = studies.parent / "task"
        write_hippocampus_phantoms(str(task), labeled + unlabeled, seed=0)
        images = sorted((task / "imagesTr").glob("*.nii.gz"))
        for i, image in enumerate(images):
            shutil.copy(image, studies / image.name)
            if i < labeled:
                shutil.copy(task / "labelsTr" / image.name, final / image.name)
        return [p.name.removesuffix(".nii.gz") for p in images]
    modality = "ct" if bundle == "heart_seg_ct" else "mr"
    entries = write_heart_phantoms(str(studies), labeled + unlabeled, modality, (48, 48, 48), (3.0, 3.0, 3.0), seed=0)
    for i, entry in enumerate(entries):
        if i < labeled:
            label = nib.load(entry["label"])
            codes = np.asarray(label.dataobj)
            indices = np.zeros(codes.shape, np.uint8)
            for index, code in enumerate(MMWHS_CODES):
                indices[codes == code] = index
            nib.save(nib.Nifti1Image(indices, label.affine), final / Path(entry["image"]).name)
        os.remove(entry["label"])
    return [Path(e["image"]).name.removesuffix(".nii.gz") for e in entries]


@pytest.fixture(scope="module", params=list(BUNDLES))
def server(request, tmp_path_factory):
    """A server for one bundle over its phantom studies; stopped after the bundle's tests."""
    name = request.param
    network, train_overrides, labeled, unlabeled = BUNDLES[name]
    root = tmp_path_factory.mktemp(f"monailabel_{name}")
    studies = root / "studies"
    study_ids = write_studies(name, studies, labeled, unlabeled)
    bundle = write_small_bundle(name, root / "bundles", network, train_overrides)
    with monailabel_server(root, str(studies), root / "bundles", name) as live:
        yield {
            **live,
            "name": name,
            "bundle": bundle,
            "studies": studies,
            "study_ids": study_ids,
            "unlabeled": study_ids[labeled:],
        }


def test_info_lists_the_bundle_with_its_labels_and_slicer_options(server):
    info = json.loads(api(server, "/info/"))
    meta = json.loads((server["bundle"] / "configs" / "metadata.json").read_text())
    channels = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    expected = {name: int(index) for index, name in channels.items() if name != "background"}
    model = info["models"][server["name"]]
    assert set(info["models"]) == {server["name"]} and set(info["trainers"]) == {server["name"]}
    assert model["labels"] == expected
    assert model["config"]["sw_overlap"] == 0.25 and model["config"]["sw_batch_size"] == 2


def test_the_best_model_is_what_inference_loads(server, tmp_path):
    """models/ holds last.pt (zeros) beside model.pt: model.pt must be the default file, and the one used."""
    info = json.loads(api(server, "/info/"))
    assert info["models"][server["name"]]["config"]["model_filename"][0] == "model.pt"
    api(server, f"/infer/{server['name']}?image={server['unlabeled'][0]}&output=image", method="POST")
    used = [line for line in server_log(server, 400).splitlines() if "provided model_file" in line]
    assert used and used[-1].endswith(str(server["bundle"] / "models" / "model.pt")), used


def test_infer_returns_channel_indices_on_the_study_grid(server, tmp_path):
    study = server["unlabeled"][0]
    result = tmp_path / "pred.nii.gz"
    form = {"params": json.dumps({"sw_overlap": 0.5})}  # a Slicer option: its value reaches the bundle's inferer
    path = f"/infer/{server['name']}?image={study}&output=image"
    result.write_bytes(api(server, path, method="POST", files={}, form=form))
    label, image = nib.load(result), nib.load(server["studies"] / f"{study}.nii.gz")
    assert label.shape == image.shape
    np.testing.assert_allclose(label.affine, image.affine, atol=1e-4)
    classes = len(json.loads(api(server, "/info/"))["models"][server["name"]]["labels"]) + 1
    values = np.unique(np.asarray(label.dataobj))
    assert set(values.tolist()) <= set(range(classes)), f"label values {values} are not channel indices"
    inferers = [line for line in server_log(server, 400).splitlines() if "Inferer::" in line]
    assert "'overlap': 0.5" in inferers[-1], inferers[-1]


def test_a_training_round_rewrites_the_model(server):
    """A round starts afresh from models/model.pt and validates before it ends (heart_seg_ct: two, one shorter)."""
    model = server["bundle"] / "models" / "model.pt"
    rounds = (2, 1) if server["name"] == "heart_seg_ct" else (1,)
    for max_epochs in rounds:
        before = model.stat().st_mtime_ns
        task = train(server, server["name"], max_epochs)
        assert task["status"] == "DONE", f"training {task['status']}:\n" + "\n".join(task.get("details", []))
        assert model.stat().st_mtime_ns > before, f"a {max_epochs}-epoch round did not rewrite models/model.pt"
    state = torch.load(model, map_location="cpu", weights_only=True)
    small_network(server["bundle"]).load_state_dict(state.get("model", state))  # strict: the served network's keys


def test_epistemic_scoring_offers_the_least_certain_study(server):
    if server["name"] != "heart_seg_ct":
        pytest.skip("one bundle is enough to show the strategy follows the score")
    name = server["name"]
    api(server, f"/scoring/{name}_epistemic?run_sync=true", method="POST", body={})
    scores = {}
    for study in server["unlabeled"]:
        info = json.loads(api(server, f"/datastore/image/info?image={study}"))
        scores[study] = info["epistemic_entropy"]
    assert len(set(scores.values())) == len(scores) and all(s > 0 for s in scores.values()), scores
    chosen = json.loads(api(server, "/activelearning/epistemic", method="POST", body={}))
    assert chosen["id"] == max(scores, key=scores.get), (chosen, scores)


def test_the_released_hippocampus_model_is_served_at_start(tmp_path):
    """brain_hippocampus as shipped, with its released models/model.pt: listed for inference at start, no Train
    first, and it segments a real crop (a generated one where the shared data is absent)."""
    bundles = tmp_path / "bundles"
    ignore = shutil.ignore_patterns("eval", "logs", "data")
    shutil.copytree(REPO_ROOT / "bundles" / "brain_hippocampus", bundles / "brain_hippocampus", ignore=ignore)
    studies = tmp_path / "studies"
    (studies / "labels" / "final").mkdir(parents=True)
    real = SHARED_DATA / "msd_hippocampus" / "imagesTr" / "hippocampus_003.nii.gz"
    if real.is_file():
        shutil.copy(real, studies / real.name)
    else:
        write_hippocampus_phantoms(str(tmp_path / "task"), 1, seed=0)
        shutil.copy(next((tmp_path / "task" / "imagesTr").glob("*.nii.gz")), studies / "hippocampus_003.nii.gz")
    with monailabel_server(tmp_path, str(studies), bundles, "brain_hippocampus") as live:
        info = json.loads(api(live, "/info/"))
        assert "brain_hippocampus" in info["models"], server_log(live)
        result = tmp_path / "pred.nii.gz"
        result.write_bytes(api(live, "/infer/brain_hippocampus?image=hippocampus_003&output=image", method="POST"))
    label = np.asarray(nib.load(result).dataobj)
    assert label.shape == nib.load(studies / "hippocampus_003.nii.gz").shape
    assert set(np.unique(label).tolist()) == {0, 1, 2}  # both structures found by the released model
