"""A throwaway Orthanc PACS with its DICOMweb plugin, on the loopback address only, for the integration tests."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path

import pytest

PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Orthanc:
    """Start with :meth:`start`, fill with :meth:`upload`, query over DICOMweb at :attr:`dicomweb`; :meth:`stop`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.http_port, self.dicom_port = _free_port(), _free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.dicomweb = f"{self.url}/dicom-web"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> Orthanc:
        binary = shutil.which("Orthanc")
        if binary is None or not PLUGIN.is_file():
            pytest.skip("Orthanc with its DICOMweb plugin is absent (Debian packages orthanc, orthanc-dicomweb)")
        config = {
            "Name": "xlstm-monai-test",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "RemoteAccessAllowed": False,  # loopback only
            "AuthenticationEnabled": False,
            "DicomServerEnabled": False,
            "Plugins": [str(PLUGIN)],
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "EnableWado": True,
                "StudiesMetadata": "Full",
                "SeriesMetadata": "Full",
            },
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "orthanc.json").write_text(json.dumps(config, indent=2))
        log = open(self.folder / "orthanc.log", "w")
        self.process = subprocess.Popen([binary, str(self.folder / "orthanc.json")], stdout=log, stderr=log)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                self.get("/system")
                return self
            except OSError:
                if self.process.poll() is not None:
                    log = (self.folder / "orthanc.log").read_text()[-2000:]
                    raise RuntimeError(f"Orthanc exited: {log}") from None
                time.sleep(0.5)
        raise TimeoutError("Orthanc did not answer")

    def get(self, path: str, accept: str | None = None) -> bytes:
        request = urllib.request.Request(f"{self.url}{path}", headers={"Accept": accept} if accept else {})
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.read()

    def upload(self, files: Iterable[Path]) -> int:
        count = 0
        for path in files:
            request = urllib.request.Request(f"{self.url}/instances", data=Path(path).read_bytes(), method="POST")
            with urllib.request.urlopen(request, timeout=60):
                count += 1
        return count

    def series(self) -> list[dict]:
        """Every series in the archive, as DICOMweb's QIDO-RS lists it."""
        return json.loads(self.get("/dicom-web/series", accept="application/dicom+json"))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
