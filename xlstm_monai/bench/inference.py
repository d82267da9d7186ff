"""
Inference cost per volume of each segmentation bundle: its inference.yaml on a typical input, with its default
network, run by PyTorch and by ONNX Runtime (the bundle's own ``onnx_export`` at its ROI), each in a fresh process
(:mod:`xlstm_monai.bench.measure`).

Weights are random (cost does not depend on them). Each run segments ``volumes`` copies of the input; the time per
volume (reading, preprocessing, sliding-window inference, inversion to the input's grid, saving) is the median over
all but the first, which pays for allocations and caches; the memory is the process's peak resident set.
Results are kept per (bundle, backend) in the JSON, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import yaml

from xlstm_monai.bench.measure import start
from xlstm_monai.bench.study import command, write_report
from xlstm_monai.networks import export_bundle_onnx
from xlstm_monai.workflow import bundle_path

__all__ = ["TYPICAL_INPUTS", "benchmark_inference"]

# a typical input of each bundle: (shape, spacing in mm) as the scanner writes it
TYPICAL_INPUTS = {
    "heart_seg_ct": ((512, 512, 160), (0.7, 0.7, 1.5)),  # a contrast chest CT block around the heart
    "heart_seg_mri": ((256, 256, 12), (1.37, 1.37, 10.0)),  # a short-axis cine stack, one phase
    "brain_hippocampus": ((35, 50, 35), (1.0, 1.0, 1.0)),  # an MSD Task04 crop
}


def _write_input(folder: Path, bundle: str, volumes: int) -> None:
    shape, spacing = TYPICAL_INPUTS[bundle]
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, shape).astype(np.float32)
    affine = np.diag([*spacing, 1.0])
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(volumes):
        nib.save(nib.Nifti1Image(base * 100 + 40, affine), folder / f"case{i}.nii.gz")


def _overlay_settings(bundle: str, overlay: str | None) -> dict:
    """The overrides of a variant: one of the bundle's overlay configs (e.g. large.yaml, a flat ``network_def#...``
    mapping) or one setting, ``key=value`` (the value read as YAML, e.g. ``invert_labels=true``)."""
    if not overlay:
        return {}
    if "=" in overlay:
        key, value = overlay.split("=", 1)
        return {key: yaml.safe_load(value)}
    path = bundle_path(bundle) / "configs" / overlay
    if not path.is_file():
        raise FileNotFoundError(f"{bundle} has no overlay configs/{overlay}")
    return yaml.safe_load(path.read_text()) or {}


def _run(bundle: str, root: Path, backend: str, threads: int, volumes: int, overlay: str | None = None) -> dict:
    overrides = {
        **_overlay_settings(bundle, overlay),
        "bundle_root": str(root),
        "dataset_dir": str(root / "input"),
        "input_pattern": "*.nii.gz",
        "output_dir": str(root / f"out_{backend}"),
        "num_workers": 0,
    }
    if backend == "onnxruntime":
        overrides["onnx_path"] = str(root / "models" / "model.onnx")
    out = root / f"measured_{backend}.json"
    out.unlink(missing_ok=True)
    process = start("inference", bundle, overrides, out, threads=threads)
    log, _ = process.communicate()
    if process.returncode or not out.is_file():
        raise RuntimeError(f"{bundle} {backend} failed: {log[-2000:]}")
    result = json.loads(out.read_text())
    seconds = result["seconds"][1:] or result["seconds"]
    return {
        "bundle": bundle,
        "backend": backend,
        "variant": overlay or "default",
        "seconds_per_volume": float(np.median(seconds)),
        "peak_gib": result["peak_gib"],
        "volumes": volumes,
        "threads": threads,
    }


def _prepare(bundle: str, root: Path, volumes: int, onnx: bool, overlay: str | None = None) -> None:
    """Random weights of the network (the default, or a variant's), their ONNX export at the ROI if ``onnx``, and
    the inputs."""
    import torch
    from monai.bundle import ConfigParser

    folder = bundle_path(bundle)
    parser = ConfigParser()
    parser.read_config(str(folder / "configs" / "inference.yaml"))
    parser.update(_overlay_settings(bundle, overlay))
    if not (root / "models" / "model.pt").is_file():
        (root / "models").mkdir(parents=True, exist_ok=True)
        torch.save(parser.get_parsed_content("network_def").state_dict(), root / "models" / "model.pt")
    if onnx and not (root / "models" / "model.onnx").is_file():
        if overlay:
            raise ValueError("the ONNX Runtime backend runs the bundle's default configuration only")
        shape = [1, 1, *parser.get_parsed_content("roi_size")]
        started = time.time()
        export_bundle_onnx(folder, root / "models" / "model.pt", root / "models" / "model.onnx", shape)
        (root / "export.json").write_text(json.dumps({"onnx_export_seconds": time.time() - started}))
    if not (root / "input").is_dir():
        _write_input(root / "input", bundle, volumes)


def benchmark_inference(
    bundles: tuple[str, ...] = tuple(TYPICAL_INPUTS),
    backends: tuple[str, ...] = ("pytorch", "onnxruntime"),
    threads: int = 2,
    volumes: int = 3,
    work_dir: str | None = None,
    output: str = "runs/bench_inference.json",
    overlays: tuple[str, ...] = (),
) -> dict:
    """
    Args:
        bundles: segmentation bundles to measure.
        backends: "pytorch" (the bundle's network) and/or "onnxruntime" (its onnx_export).
        threads: CPU threads of each run.
        volumes: inputs segmented per run (the first is a warm-up).
        overlays: variants also measured, with PyTorch, in the same run as the default: overlay configs of the
            bundles (e.g. "large.yaml") or single settings (e.g. "invert_labels=true").
    """
    work = Path(work_dir or tempfile.mkdtemp(prefix="bench_inference_"))
    path = Path(output)
    report = json.loads(path.read_text()) if path.is_file() else {"runs": []}
    done = {(r["bundle"], r["backend"], r.get("variant", "default")) for r in report["runs"]}
    units = [(backend, None) for backend in backends] + [("pytorch", overlay) for overlay in overlays]
    started = time.time()
    for bundle in bundles:
        for backend, overlay in units:
            if (bundle, backend, overlay or "default") in done:
                continue
            root = work / bundle / (overlay or "default").replace("=", "_")
            _prepare(bundle, root, volumes, onnx=backend == "onnxruntime", overlay=overlay)
            result = _run(bundle, root, backend, threads, volumes, overlay)
            result["input"] = {"shape": TYPICAL_INPUTS[bundle][0], "spacing_mm": TYPICAL_INPUTS[bundle][1]}
            if backend == "onnxruntime" and (root / "export.json").is_file():
                result.update(json.loads((root / "export.json").read_text()))
            report["runs"].append(result)
            print(
                f"  {bundle} {backend} {result['variant']}: {result['seconds_per_volume']:.1f} s/volume, "
                f"{result['peak_gib']:.2f} GiB",
                flush=True,
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report, indent=2))
    report["command"] = command(
        "inference", bundles=bundles, backends=backends, threads=threads, volumes=volumes, overlays=overlays or None
    )
    report["minutes"] = (time.time() - started) / 60
    return write_report(report, path, format_table(report))


def format_table(report: dict) -> str:
    lines = [
        "| bundle | input (voxels at mm) | variant | backend | s / volume | peak GiB | time / default, PyTorch "
        "| one-off export (min) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by = {(r["bundle"], r["backend"], r.get("variant", "default")): r for r in report["runs"]}
    for (bundle, backend, variant), r in by.items():
        torch_run = by.get((bundle, "pytorch", "default"))
        ratio = f"{r['seconds_per_volume'] / torch_run['seconds_per_volume']:.2f}x" if torch_run else "-"
        shape, spacing = r["input"]["shape"], r["input"]["spacing_mm"]
        size = f"{'x'.join(map(str, shape))} at {'x'.join(f'{s:g}' for s in spacing)}"
        export = f"{r['onnx_export_seconds'] / 60:.1f}" if "onnx_export_seconds" in r else "-"
        lines.append(
            f"| {bundle} | {size} | {variant} | {backend} | {r['seconds_per_volume']:.1f} | {r['peak_gib']:.2f} "
            f"| {ratio} | {export} |"
        )
    return "\n".join(lines)
