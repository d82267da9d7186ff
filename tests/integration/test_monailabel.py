"""heart_seg_ct as a MONAI Label model: /info, /infer and /train against a live server over phantom studies.

MONAI Label imports torchvision, whose wheels need another torch build than the main environment's, so the
server runs from its own virtualenv (``bash ci/monailabel_env.sh``) and this test drives it over HTTP. It starts
monailabel_app as the README does, over a copy of the bundle shrunk to run in seconds on CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from tests.conftest import REPO_ROOT
from xlstm_monai.data import MMWHS_CODES
from xlstm_monai.phantoms import write_heart_phantoms
from xlstm_monai.presets import SMALL, overrides

pytestmark = pytest.mark.monailabel

BUNDLE = "heart_seg_ct"
SHAPE, SPACING = (48, 48, 48), (3.0, 3.0, 3.0)
NUM_LABELED, NUM_UNLABELED = 3, 1  # 3 labelled: 2 train (one batch), 1 validates
# written into the copied configs: a small network on whole 48^3 volumes at 3 mm, so CPU steps take seconds
SMALL = {
    **overrides(SMALL, feature_size=16),
    "roi_size": [48, 48, 48],
    "spacing": [3.0, 3.0, 3.0],
    "num_workers": 0,
}
SMALL_TRAIN = {"num_samples": 1}
START_TIMEOUT, TRAIN_TIMEOUT = 120.0, 180.0


def label_python() -> Path:
    """Python of the MONAI Label virtualenv: $XLSTM_MONAI_LABEL_PYTHON or <repo>/.venv-label; skip if absent."""
    path = Path(os.environ.get("XLSTM_MONAI_LABEL_PYTHON", REPO_ROOT / ".venv-label" / "bin" / "python"))
    if not path.exists():
        pytest.skip(f"MONAI Label environment {path} is absent (create it with `bash ci/monailabel_env.sh`)")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(url: str, method: str = "GET", body: dict | None = None, timeout: float = 120.0) -> bytes:
    data = json.dumps(body).encode() if body is not None else b""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    req = urllib.request.Request(url, data=data if method != "GET" else None, headers=headers, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as response:
        return response.read()


def write_studies(studies: Path) -> list[str]:
    """MONAI Label's local datastore: images in the folder, labels of the same file name in labels/final/.

    MONAI Label's labels hold channel indices (what Slicer saves), so the phantoms' MM-WHS codes are mapped.
    """
    entries = write_heart_phantoms(str(studies), NUM_LABELED + NUM_UNLABELED, "ct", SHAPE, SPACING, seed=0)
    final = studies / "labels" / "final"
    final.mkdir(parents=True)
    for entry in entries[:NUM_LABELED]:
        label = nib.load(entry["label"])
        codes = np.asarray(label.dataobj)
        indices = np.zeros(codes.shape, np.uint8)
        for index, code in enumerate(MMWHS_CODES):
            indices[codes == code] = index
        nib.save(nib.Nifti1Image(indices, label.affine), final / Path(entry["image"]).name)
    for entry in entries:
        os.remove(entry["label"])
    return [Path(e["image"]).name.removesuffix(".nii.gz") for e in entries]


def override_yaml(path: Path, overrides: dict) -> None:
    config = yaml.safe_load(path.read_text())
    for key, value in overrides.items():
        *parents, last = key.split("#")
        node = config
        for part in parents:
            node = node[part]
        node[last] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def small_network(bundle: Path) -> torch.nn.Module:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.yaml"))
    return parser.get_parsed_content("network_def")


def write_small_bundle(bundles_dir: Path) -> Path:
    """A copy of the bundle, shrunk, with models/model.pt of the shrunk network (training rewrites it)."""
    bundle = bundles_dir / BUNDLE
    ignore = shutil.ignore_patterns("models", "eval", "logs", "data")
    shutil.copytree(REPO_ROOT / "bundles" / BUNDLE, bundle, ignore=ignore)
    override_yaml(bundle / "configs" / "inference.yaml", SMALL)
    override_yaml(bundle / "configs" / "train.yaml", {**SMALL, **SMALL_TRAIN})
    torch.manual_seed(0)
    (bundle / "models").mkdir()
    torch.save(small_network(bundle).state_dict(), bundle / "models" / "model.pt")
    return bundle


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A MONAI Label server on a free local port, serving the small bundle over phantom studies; stopped after."""
    python = label_python()
    root = tmp_path_factory.mktemp("monailabel")
    studies = root / "studies"
    study_ids = write_studies(studies)
    bundle = write_small_bundle(root / "bundles")
    app = root / "app"  # a copy: MONAI Label writes logs and folders into its app folder
    app.mkdir()
    shutil.copy(REPO_ROOT / "monailabel_app" / "main.py", app)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(root / "server.log", "w")
    command = [
        python,
        "-m",
        "monailabel.main",
        "start_server",
        "--app",
        app,
        "--studies",
        studies,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--conf",
        "bundles_dir",
        root / "bundles",
    ]
    # its own session, so stopping it also stops the training process it starts
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                request(f"{url}/info/", timeout=5)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"MONAI Label server did not start:\n{server_log(root)}")
                time.sleep(0.5)
        yield {"url": url, "bundle": bundle, "studies": studies, "study_ids": study_ids, "root": root}
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def server_log(root: Path, lines: int = 60) -> str:
    return "\n".join((root / "server.log").read_text().splitlines()[-lines:])


def api(server: dict, path: str, method: str = "GET", body: dict | None = None) -> bytes:
    """A call to the server; an HTTP error fails the test with the end of the server log, where the cause is."""
    try:
        return request(server["url"] + path, method, body)
    except urllib.error.HTTPError as err:
        pytest.fail(f"{method} {path}: {err}\n{server_log(server['root'])}")


def test_info_lists_the_bundle_with_its_labels(server):
    info = json.loads(api(server, "/info/"))
    meta = json.loads((server["bundle"] / "configs" / "metadata.json").read_text())
    channels = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    expected = {name: int(index) for index, name in channels.items() if name != "background"}
    assert set(info["models"]) == {BUNDLE} and set(info["trainers"]) == {BUNDLE}
    assert info["models"][BUNDLE]["labels"] == expected


def test_infer_returns_channel_indices_on_the_study_grid(server, tmp_path):
    study = server["study_ids"][-1]  # an unlabelled one
    result = tmp_path / "pred.nii.gz"
    result.write_bytes(api(server, f"/infer/{BUNDLE}?image={study}&output=image", method="POST"))
    label, image = nib.load(result), nib.load(server["studies"] / f"{study}.nii.gz")
    assert label.shape == image.shape
    np.testing.assert_allclose(label.affine, image.affine, atol=1e-4)
    values = np.unique(np.asarray(label.dataobj))
    assert set(values.tolist()) <= set(range(8)), f"label values {values} are not channel indices 0..7"


def train(server, max_epochs: int) -> dict:
    """One training round through /train/, polled until it ends; returns MONAI Label's task record."""
    params = {"max_epochs": max_epochs, "val_split": 0.34, "device": "cpu", "multi_gpu": False}
    api(server, f"/train/{BUNDLE}", method="POST", body=params)
    deadline = time.monotonic() + TRAIN_TIMEOUT
    while True:
        task = json.loads(api(server, "/train/"))
        if task["status"] not in ("SUBMITTED", "RUNNING"):
            return task
        if time.monotonic() > deadline:
            api(server, "/train/", method="DELETE")
            pytest.fail(f"training did not end in {TRAIN_TIMEOUT:.0f} s:\n{server_log(server['root'])}")
        time.sleep(1)


def test_training_rounds_rewrite_the_model(server):
    """Two rounds, the second shorter: each starts afresh from models/model.pt and validates before it ends."""
    model = server["bundle"] / "models" / "model.pt"
    for max_epochs in (2, 1):
        before = model.stat().st_mtime_ns
        task = train(server, max_epochs)
        assert task["status"] == "DONE", f"training {task['status']}:\n" + "\n".join(task.get("details", []))
        assert model.stat().st_mtime_ns > before, f"a {max_epochs}-epoch round did not rewrite models/model.pt"
    state = torch.load(model, map_location="cpu", weights_only=True)
    small_network(server["bundle"]).load_state_dict(state.get("model", state))  # strict: the served network's keys
