"""
Bundle archives in the MONAI model zoo's layout, for ``python -m monai.bundle download``.

One zip per bundle with the bundle folder at its root (``heart_seg_ct/configs/...``), named ``NAME_vVERSION.zip``,
and an index, ``model_info.json``, in the model zoo's own format: ``{"NAME_vVERSION": {"checksum": md5, "source":
url}}``. A zip holds what a bundle ships: configs, docs, LICENSE and large_files.yml. Weights never go into a zip:
when a bundle has trained weights (``models/model.pt``) they are copied beside the archives and listed, with URL
and md5, in the archived ``large_files.yml``, which ``python -m monai.bundle download_large_files`` reads.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import yaml

from xlstm_monai.networks.checkpoint_file import file_hash
from xlstm_monai.workflow import bundles_dir as installed_bundles

__all__ = ["SHIPPED", "package_bundles"]

SHIPPED = ("configs", "docs", "LICENSE", "large_files.yml")  # what a bundle archive holds, as in the model zoo
# weights published beside the archives; never last.pt, a training state
PUBLISHED_WEIGHTS = ("model.pt", "model.ts", "pretrained.pt", "pretrained.json", "brain_mri_pretrained.pt")
LARGE_FILES_HEADER = (
    "# Weights are not kept in the archive: `python -m monai.bundle download_large_files --bundle_path .` fetches\n"
    "# them from their URL and checks their hash.\n"
)


def md5sum(path: str | Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _shipped_files(bundle: Path) -> list[Path]:
    files = []
    for name in SHIPPED:
        path = bundle / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += [
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and "__pycache__" not in p.parts
                and not any(part.startswith(".") for part in p.relative_to(bundle).parts)
            ]
    missing = [n for n in SHIPPED if not (bundle / n).exists()]
    if missing:
        raise FileNotFoundError(f"bundle {bundle} lacks {', '.join(missing)}")
    return files


def _publish_weights(weights: Path, release: Path, stem: str, base_url: str) -> list[dict]:
    """Copy the trained weights in ``weights`` beside the archives; return their large_files.yml entries."""
    entries = []
    for path in [weights / n for n in PUBLISHED_WEIGHTS if (weights / n).is_file()]:
        published = f"{stem}_{path.name}"
        shutil.copyfile(path, release / published)
        entries.append(
            {
                "path": f"models/{path.name}",
                "url": f"{base_url}/{published}",
                "hash_val": file_hash(path, "sha256"),
                "hash_type": "sha256",
            }
        )
    return entries


def package_bundles(
    bundles_dir: str | None = None,
    release_dir: str = "release",
    base_url: str | None = None,
    names: list[str] | None = None,
    weights_dir: str | None = None,
) -> dict:
    """
    Write ``NAME_vVERSION.zip`` for every bundle (or ``names``) and ``model_info.json`` into ``release_dir``.

    Args:
        base_url: where the release folder will be served (e.g. a GitHub release's download URL); default its own
            ``file://`` address, so the folder works as a local release at once.
        weights_dir: folder with ``NAME/models/model.pt`` (``pretrained.pt`` for pretrain_ssl) to publish; default
            each bundle's own ``models/`` folder (its released weights). Weights go into the archive and beside it,
            listed with their sha256 in the archive's large_files.yml. Bundles with no weights are archived with
            their large_files.yml unchanged.

    Returns:
        the index written to model_info.json.
    """
    bundles = Path(bundles_dir) if bundles_dir else installed_bundles()
    release = Path(release_dir)
    release.mkdir(parents=True, exist_ok=True)
    base_url = (base_url or release.resolve().as_uri()).rstrip("/")
    selected = names or sorted(p.name for p in bundles.iterdir() if (p / "configs" / "metadata.json").is_file())
    if not selected:
        raise FileNotFoundError(f"no bundles (folders with configs/metadata.json) in {bundles}")
    index_path = release / "model_info.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    for name in selected:
        bundle = bundles / name
        version = json.loads((bundle / "configs" / "metadata.json").read_text())["version"]
        stem = f"{name}_v{version}"
        weights = Path(weights_dir) / name / "models" if weights_dir else bundle / "models"
        entries = _publish_weights(weights, release, stem, base_url) if weights.is_dir() else []
        archive = release / f"{stem}.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
            for path in _shipped_files(bundle):
                arcname = f"{name}/{path.relative_to(bundle).as_posix()}"
                if path.name == "large_files.yml" and entries:
                    zipped.writestr(
                        arcname, LARGE_FILES_HEADER + yaml.safe_dump({"large_files": entries}, sort_keys=False)
                    )
                else:
                    zipped.write(path, arcname)
            for entry in entries:  # the weights too: a few MB each, and the archive works offline
                zipped.write(weights / Path(entry["path"]).name, f"{name}/{entry['path']}")
        index[stem] = {"checksum": md5sum(archive), "source": f"{base_url}/{archive.name}"}
        print(f"{archive}  ({len(entries)} weight file(s) listed in large_files.yml)")
    index_path.write_text(json.dumps(index, indent=4, sort_keys=True) + "\n")
    print(f"index: {index_path}")
    return index
