"""
The checks the MONAI model zoo runs on a bundle before it is published, run on ours.

For every bundle: metadata against the meta schema (offline), the version against the changelog, large_files.yml,
the style of its YAML and JSON, every ``@reference`` of every config (overlays merged onto train.yaml, as they are
run), ``verify_net_in_out`` for the shapes the metadata declares, a short real run of its configs on generated data
(train, evaluate, inference; export for pretrain_ssl), and ``ckpt_export`` of the trained network as a traced
TorchScript model compared with the eager one. The multi-GPU config is checked statically: it needs NCCL and GPUs.

The short runs use a tiny network and a handful of phantoms (``SMOKE``): they show the configs work end to end, not
accuracy.
"""

from __future__ import annotations

import glob
import json
import re
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
import yaml
from monai.bundle import ConfigParser, ReferenceResolver

from xlstm_monai.presets import SMOKE
from xlstm_monai.workflow import bundles_dir as installed_bundles
from xlstm_monai.workflow import run_workflow

__all__ = ["SMOKE", "verify_bundles", "check_version", "check_large_files", "check_style", "check_references"]


# the configs that stand alone; every other one (evaluate, multi_gpu_train, export, brain_mri, ...) is an overlay of
# train.yaml. multi_gpu_train needs torchrun on GPUs, so it is checked statically only
COMPLETE_CONFIGS = ("train.yaml", "inference.yaml")
_FLOAT_AS_STRING = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")  # YAML 1.1 reads 1e-4 as a string
_HASH_TYPES = {"md5", "sha1", "sha256", "sha512"}


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def check_version(bundle: Path) -> str:
    """The metadata version is a changelog entry and the newest one."""
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    version, changelog = meta["version"], meta.get("changelog", {})
    if version not in changelog:
        raise ValueError(f"version {version} has no changelog entry (changelog: {sorted(changelog)})")
    newest = max(changelog, key=_version_key)
    if newest != version:
        raise ValueError(f"version {version} is older than the newest changelog entry {newest}")
    return f"version {version} = newest changelog entry"


def check_large_files(bundle: Path) -> str:
    """large_files.yml is a list of {path inside the bundle, url, hash_val, hash_type}."""
    path = bundle / "large_files.yml"
    content = yaml.safe_load(path.read_text())
    if not isinstance(content, dict) or not isinstance(content.get("large_files"), list):
        raise ValueError(f"{path}: needs a top-level 'large_files' list")
    for entry in content["large_files"]:
        missing = {"path", "url", "hash_val", "hash_type"} - set(entry)
        if missing:
            raise ValueError(f"{path}: entry {entry} lacks {sorted(missing)}")
        if Path(entry["path"]).is_absolute() or ".." in Path(entry["path"]).parts:
            raise ValueError(f"{path}: {entry['path']} is not a path inside the bundle")
        if not re.match(r"^(https?|file)://", entry["url"]) or entry["hash_type"] not in _HASH_TYPES:
            raise ValueError(f"{path}: {entry['path']} needs an http(s)/file URL and one of {sorted(_HASH_TYPES)}")
    return f"{len(content['large_files'])} large file(s) listed"


def _strings_that_look_like_floats(node, where=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings_that_look_like_floats(value, f"{where}#{key}" if where else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings_that_look_like_floats(value, f"{where}#{i}")
    elif isinstance(node, str) and _FLOAT_AS_STRING.match(node):
        yield f"{where}: {node!r}"


def check_style(bundle: Path) -> str:
    """YAML: no tabs or trailing spaces, newline at the end, no float YAML reads as a string; JSON: 4-space indent."""
    problems = []
    files = sorted((bundle / "configs").glob("*.yaml")) + [bundle / "large_files.yml"]
    for path in files:
        text = path.read_text()
        for number, line in enumerate(text.splitlines(), 1):
            if "\t" in line or line != line.rstrip():
                problems.append(f"{path.name}:{number}: tab or trailing whitespace")
        if not text.endswith("\n"):
            problems.append(f"{path.name}: no newline at the end")
        problems += [
            f"{path.name}: {p} (write 1.0e-4, not 1e-4)" for p in _strings_that_look_like_floats(yaml.safe_load(text))
        ]
    for path in sorted((bundle / "configs").glob("*.json")):
        text = path.read_text()
        if text != json.dumps(json.loads(text), indent=4, ensure_ascii=False) + "\n":
            problems.append(f"{path.name}: not formatted as json.dumps(indent=4) with a final newline")
    if problems:
        raise ValueError("; ".join(problems))
    return f"{len(files)} YAML and {len(list((bundle / 'configs').glob('*.json')))} JSON file(s) clean"


def _config_files(bundle: Path, name: str) -> list[str]:
    configs = bundle / "configs"
    return [str(configs / name)] if name in COMPLETE_CONFIGS else [str(configs / "train.yaml"), str(configs / name)]


def check_references(bundle: Path) -> str:
    """Every @id of every config resolves to an id (overlays merged onto the config they modify)."""
    problems, count = [], 0
    for path in sorted((bundle / "configs").glob("*.yaml")):
        parser = ConfigParser()
        parser.read_config(_config_files(bundle, path.name))
        parser.read_meta(str(bundle / "configs" / "metadata.json"))
        parser.resolve_macro_and_relative_ids()
        refs = ReferenceResolver.find_refs_in_config(parser.get(), id="")
        count += len(refs)
        problems += [f"{path.name}: @{ref} is not defined" for ref in refs if ref not in parser]
    if problems:
        raise ValueError("; ".join(problems))
    return f"{count} references resolve"


def _monai_bundle_cli(bundle: Path, *args: str) -> str:
    """``python -m monai.bundle ARGS`` in the bundle folder, as a user types it; its last log line, or an error."""
    command = [sys.executable, "-m", "monai.bundle", *args]
    done = subprocess.run(command, cwd=bundle, capture_output=True, text=True)
    lines = (done.stdout + done.stderr).strip().splitlines()
    if done.returncode:
        raise RuntimeError(
            f"`python -m monai.bundle {' '.join(args)}` exited {done.returncode}: " + (lines[-1] if lines else "")
        )
    said = done.stdout.strip().splitlines() or lines  # its own message, not a library warning on stderr
    return said[-1].split(" - ")[-1] if said else "ok"


def _verify_metadata(bundle: Path, schema: Path) -> str:
    """The model zoo's metadata check, with the meta schema at ``schema`` (it downloads it otherwise)."""
    meta = ("--meta_file", "configs/metadata.json")
    return _monai_bundle_cli(bundle, "verify_metadata", *meta, "--filepath", str(schema))


def _check_net_in_out(bundle: Path) -> str:
    """The model zoo's command with its default arguments (n=1): the declared shapes must be ones the network takes."""
    return _monai_bundle_cli(
        bundle,
        "verify_net_in_out",
        "network_def",
        "--meta_file",
        "configs/metadata.json",
        "--config_file",
        "configs/inference.yaml",
    )


def _short_run(bundle: Path, root: Path) -> str:
    """Train for an epoch on generated phantoms, evaluate, and run inference (or export, for pretrain_ssl)."""
    smoke = SMOKE[bundle.name]
    common = {"bundle_root": str(root), **smoke["network"]}
    run_workflow(bundle, ["train.yaml"], "train", **common, **smoke["train"])
    if bundle.name == "pretrain_ssl":
        run_workflow(bundle, ["train.yaml", "export.yaml"], "train", **common, **smoke["train"])
        if not (root / "models" / "pretrained.pt").is_file():
            raise FileNotFoundError("export wrote no models/pretrained.pt")
        return "train 1 epoch, export pretrained.pt"
    run_workflow(bundle, ["train.yaml", "evaluate.yaml"], "train", **common, **smoke["train"])
    images = sorted(glob.glob(str(root / smoke["images"] / "*.nii.gz")))
    run_workflow(
        bundle,
        ["inference.yaml"],
        "inference",
        **common,
        dataset_dir=str(root / smoke["images"]),
        output_dir=str(root / "infer"),
        num_workers=0,
    )
    written = glob.glob(str(root / "infer" / "*"))
    expected = 1 if bundle.name == "brain_cls" else len([i for i in images if "_label" not in i])
    if len(written) < expected:
        raise RuntimeError(f"inference wrote {len(written)} file(s) for {expected} expected")
    return f"train + evaluate 1 epoch, inference wrote {len(written)} file(s)"


def _check_export(bundle: Path, root: Path) -> str:
    """ckpt_export a traced TorchScript model of the trained network; it must match the eager network."""
    from monai.bundle import ckpt_export

    overrides = SMOKE[bundle.name]["network"]
    config = str(bundle / "configs" / "inference.yaml")
    parser = ConfigParser()
    parser.read_config(config)
    parser.update(overrides)
    size = parser.get_parsed_content("roi_size" if "roi_size" in parser else "field_of_view")
    shape = [1, parser.get_parsed_content("network_def#in_channels"), *size]
    checkpoint = torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True)
    key = "model" if "model" in checkpoint and isinstance(checkpoint["model"], dict) else ""
    exported = root / "models" / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(exported),
        ckpt_file=str(root / "models" / "model.pt"),
        meta_file=str(bundle / "configs" / "metadata.json"),
        config_file=config,
        key_in_ckpt=key,
        use_trace=True,
        input_shape=shape,
        bundle_root=str(root),
        **overrides,
    )
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(checkpoint[key] if key else checkpoint)
    network.eval()
    x = torch.rand(shape)
    with torch.no_grad():
        difference = (torch.jit.load(str(exported))(x) - network(x)).abs().max().item()
    if difference > 1e-4:
        raise ValueError(f"traced model differs from the eager one by {difference:.2e}")
    return f"traced at {shape}: max |TorchScript - eager| = {difference:.1e}"


def _run_check(results: list, bundle: str, name: str, check: Callable[..., str], *args) -> bool:
    try:
        detail, ok = check(*args), True
    except Exception as error:  # every check runs; all failures are reported together
        detail, ok = f"{type(error).__name__}: {error}".splitlines()[0][:300], False
        traceback.print_exc()
    results.append((bundle, name, "ok" if ok else "FAIL", detail))
    print(f"[{'ok' if ok else 'FAIL'}] {bundle}: {name}: {detail}", flush=True)
    return ok


def verify_bundles(
    bundles_dir: str | None = None,
    names: list[str] | None = None,
    schema: str | None = None,
    work_dir: str | None = None,
) -> bool:
    """
    Run every check on every bundle (or ``names``), print a table and return whether all passed.

    Args:
        schema: the offline MONAI meta schema; default ../shared/monai/meta_schema_20240725.json beside the
            project, and the schema check is reported as skipped when it is absent.
        work_dir: where the short runs write; default a temporary folder.
    """
    bundles = (Path(bundles_dir) if bundles_dir else installed_bundles()).resolve()
    names = names or sorted(p.name for p in bundles.iterdir() if (p / "configs" / "metadata.json").is_file())
    default_schema = bundles.parent.parent / "shared" / "monai" / "meta_schema_20240725.json"
    schema_path = Path(schema).resolve() if schema else default_schema
    work = Path(work_dir or tempfile.mkdtemp(prefix="verify_bundles_"))
    results: list[tuple[str, str, str, str]] = []
    for name in names:
        bundle = bundles / name
        if name not in SMOKE:
            raise KeyError(f"no smoke-run settings for bundle {name!r}: add it to SMOKE in xlstm_monai.presets")
        if schema_path.is_file():
            _run_check(results, name, "verify_metadata", _verify_metadata, bundle, schema_path)
        else:
            results.append((name, "verify_metadata", "skipped", f"no offline schema at {schema_path}"))
        _run_check(results, name, "version", check_version, bundle)
        _run_check(results, name, "large_files.yml", check_large_files, bundle)
        _run_check(results, name, "YAML/JSON style", check_style, bundle)
        _run_check(results, name, "references", check_references, bundle)
        if (bundle / "configs" / "inference.yaml").is_file():
            _run_check(results, name, "verify_net_in_out", _check_net_in_out, bundle)
        root = work / name
        ran = _run_check(results, name, "short run", _short_run, bundle, root)
        if ran and name != "pretrain_ssl":
            _run_check(results, name, "ckpt_export", _check_export, bundle, root)
    print("\n| bundle | check | result | detail |\n|---|---|---|---|")
    for row in results:
        print("| " + " | ".join(row) + " |")
    return all(status != "FAIL" for _, _, status, _ in results)
