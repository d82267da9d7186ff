"""
The data check at scale: ``volumes`` generated 128^3 image/label pairs (NIfTI, gzip), checked three ways in one run:

* serial: one case after another in this process, no cache (what every run did before the check scaled);
* cold: the process pool with an empty cache (the first run on a dataset);
* warm: the same call again (every later run on an unchanged dataset).

Writes JSON and prints the times with ratios. The generated dataset is kept in ``work_dir`` and reused.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from xlstm_monai.bench.study import command, write_report
from xlstm_monai.data import check_datalist

__all__ = ["benchmark_data_check"]


def _dataset(folder: Path, volumes: int, size: int) -> list[dict]:
    """``volumes`` CT-like pairs: a sphere of contrast in soft tissue with noise, and its label (codes 0 / 500)."""
    folder.mkdir(parents=True, exist_ok=True)
    grid = np.linalg.norm(np.indices((size,) * 3) - size / 2, axis=0)
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    cases = []
    for i in range(volumes):
        image_path, label_path = folder / f"case{i:04d}_image.nii.gz", folder / f"case{i:04d}_label.nii.gz"
        if not (image_path.is_file() and label_path.is_file()):
            rng = np.random.default_rng(i)
            radius = size * rng.uniform(0.15, 0.3)
            label = (grid < radius).astype(np.int16) * 500
            image = (40 + (label > 0) * 300 + rng.normal(0, 20, grid.shape)).astype(np.int16)
            nib.save(nib.Nifti1Image(image, affine), image_path)
            nib.save(nib.Nifti1Image(label, affine), label_path)
        cases.append({"image": str(image_path), "label": str(label_path)})
    return cases


def benchmark_data_check(
    volumes: int = 500,
    size: int = 128,
    workers: int | None = None,
    work_dir: str = "runs/bench_data_check",
    output: str = "runs/bench_data_check.json",
) -> dict:
    work = Path(work_dir)
    began = time.time()
    cases = _dataset(work / "data", volumes, size)
    generated = time.time() - began
    labels = [0, 500]
    timings = {}
    start = time.perf_counter()
    serial = check_datalist(cases, labels, workers=1, cache=False)
    timings["serial"] = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as cache:
        os.environ["XLSTM_MONAI_CACHE"] = cache
        start = time.perf_counter()
        cold = check_datalist(cases, labels, workers=workers)
        timings["cold"] = time.perf_counter() - start
        start = time.perf_counter()
        warm = check_datalist(cases, labels, workers=workers)
        timings["warm"] = time.perf_counter() - start
    assert serial.lines() == cold.lines() == warm.lines()  # the same report each way
    report = {
        "command": command("data-check", volumes=volumes, size=size, workers=workers),
        "volumes": volumes,
        "size": size,
        "cpus": os.cpu_count(),
        "workers": workers or min(os.cpu_count() or 1, 8),
        "generation_seconds": generated,
        "seconds": timings,
        "cold_speedup_over_serial": timings["serial"] / timings["cold"],
    }
    table = [f"| check of {volumes} pairs at {size}^3 | seconds | vs serial |", "|---|---|---|"]
    table += [f"| {name} | {seconds:.1f} | {timings['serial'] / seconds:.2f}x |" for name, seconds in timings.items()]
    return write_report(report, output, "\n".join(table))
