"""A live MONAI Label server over monailabel_app for the integration tests, and the HTTP calls they make.

MONAI Label imports torchvision, whose wheels need another torch build than the main environment's, so the server
runs from its own virtualenv (``bash ci/monailabel_env.sh``) and the tests drive it over HTTP. Bundles are served from
shrunk copies (a small network, coarse grids) so a training round takes seconds on CPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import REPO_ROOT

START_TIMEOUT, TRAIN_TIMEOUT = 180.0, 300.0


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


def request(
    url: str,
    method: str = "GET",
    body: dict | None = None,
    timeout: float = 300.0,
    files: dict[str, Path] | None = None,
    form: dict[str, str] | None = None,
) -> bytes:
    """An HTTP call: a JSON body, or a multipart form with ``files`` and ``form`` fields."""
    headers, data = {}, None
    if files is not None:
        boundary = uuid.uuid4().hex
        parts = []
        for name, value in (form or {}).items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
        for name, path in files.items():
            head = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{path.name}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            )
            parts.append(head.encode() + path.read_bytes() + b"\r\n")
        data = b"".join(parts) + f"--{boundary}--\r\n".encode()
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    elif body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    req = urllib.request.Request(url, data=data if method != "GET" else None, headers=headers, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as response:
        return response.read()


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


def write_small_bundle(name: str, bundles_dir: Path, overrides: dict, train_overrides: dict) -> Path:
    """A shrunk copy of bundle ``name`` with models/model.pt of its network (training rewrites it), and a stale
    models/last.pt beside it, as a trained bundle has."""
    bundle = bundles_dir / name
    ignore = shutil.ignore_patterns("models", "eval", "logs", "data")
    shutil.copytree(REPO_ROOT / "bundles" / name, bundle, ignore=ignore)
    override_yaml(bundle / "configs" / "inference.yaml", overrides)
    override_yaml(bundle / "configs" / "train.yaml", {**overrides, **train_overrides})
    torch.manual_seed(0)
    (bundle / "models").mkdir()
    network = small_network(bundle)
    torch.save(network.state_dict(), bundle / "models" / "model.pt")
    stale = {k: torch.zeros_like(v) for k, v in network.state_dict().items()}  # not the weights to serve
    torch.save({"model": stale}, bundle / "models" / "last.pt")
    return bundle


@contextlib.contextmanager
def monailabel_server(root: Path, studies: str, bundles_dir: Path, models: str, env: dict | None = None):
    """``monailabel start_server`` on a free loopback port over ``studies`` (a folder or a DICOMweb URL), as the
    docs/monailabel.md runs it; yields {"url", "root"}; stopped with the training processes it started."""
    python = label_python()
    app = root / "app"  # a copy: MONAI Label writes logs and folders into its app folder
    app.mkdir(parents=True)
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
        bundles_dir,
        "--conf",
        "models",
        models,
        "--conf",
        "epistemic_samples",
        "3",
    ]
    environment = {**os.environ, "MONAI_LABEL_AUTO_UPDATE_SCORING": "false", **(env or {})}
    # its own session, so stopping it also stops the training process it starts
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=environment)
    server = {"url": url, "root": root}
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                request(f"{url}/info/", timeout=5)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"MONAI Label server did not start:\n{server_log(server)}")
                time.sleep(0.5)
        yield server
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def server_log(server: dict, lines: int = 60) -> str:
    return "\n".join((server["root"] / "server.log").read_text().splitlines()[-lines:])


def api(server: dict, path: str, method: str = "GET", body: dict | None = None, **kwargs) -> bytes:
    """A call to the server; an HTTP error fails the test with the end of the server log, where the cause is."""
    try:
        return request(server["url"] + path, method, body, **kwargs)
    except urllib.error.HTTPError as err:
        pytest.fail(f"{method} {path}: {err}\n{server_log(server)}")


def train(server: dict, bundle: str, max_epochs: int) -> dict:
    """One training round through /train/, polled until it ends; returns MONAI Label's task record."""
    params = {"max_epochs": max_epochs, "val_split": 0.34, "device": "cpu", "multi_gpu": False}
    api(server, f"/train/{bundle}", method="POST", body=params)
    deadline = time.monotonic() + TRAIN_TIMEOUT
    while True:
        task = json.loads(api(server, "/train/"))
        if task["status"] not in ("SUBMITTED", "RUNNING"):
            return task
        if time.monotonic() > deadline:
            api(server, "/train/", method="DELETE")
            pytest.fail(f"training did not end in {TRAIN_TIMEOUT:.0f} s:\n{server_log(server)}")
        time.sleep(1)
