"""
The hardware check of a CUDA machine (an H100 or H200) in one call (``ci/gpu_check``), in well under 8 minutes:

1. the ``gpu``-marked tests (Triton mLSTM kernels against the CPU kernel);
2. ``bench networks``: a training step of XLSTMUNet beside MONAI's UNet, SegResNet, UNETR and SwinUNETR at
   64^3, 96^3, 128^3 and 160^3, batch 2, bf16, one process each (out of memory is recorded as such);
3. 20 training iterations of every bundle's default network on its phantoms, the five bundles side by side (peak
   memory: CUDA's peak allocation; on the CPU the process's peak resident set);

then one JSON per part under ``out_dir`` and one printed table. ``dry_run`` runs the same code paths on the CPU at
tiny sizes (CI runs it, so the check cannot rot between runs on a CUDA machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from xlstm_monai.bench.measure import start
from xlstm_monai.bench.study import command, write_report

__all__ = ["gpu_check"]

BUNDLES = ("heart_seg_ct", "heart_seg_mri", "brain_hippocampus", "brain_cls", "pretrain_ssl")


def _bundle_overrides(bundle: str, root: Path, iterations: int, dry_run: bool) -> dict:
    """The bundle's default network (a tiny one in a dry run) for ``iterations`` steps, no validation."""
    from xlstm_monai.presets import SMOKE

    overrides = {"bundle_root": str(root), "num_workers": 4, "cache_rate": 0.0, "resume": False}
    if dry_run:
        overrides.update({**SMOKE[bundle]["network"], **SMOKE[bundle]["train"], "num_workers": 0})
    overrides.update({"epochs": 1, "train#trainer#epoch_length": iterations})
    if bundle != "pretrain_ssl":
        overrides["val_interval"] = 10**6  # the cost of training steps only
    return overrides


def _bundle_runs(out: Path, iterations: int, dry_run: bool) -> list[dict]:
    """The bundles' default networks, each in its own process, all at once (one GPU holds them all)."""
    work = Path(tempfile.mkdtemp(prefix="gpu_check_bundles_"))
    processes = []
    for bundle in BUNDLES:
        result = work / f"{bundle}.json"
        overrides = _bundle_overrides(bundle, work / bundle, iterations, dry_run)
        log = open(work / f"{bundle}.log", "w")
        processes.append((bundle, result, log, start("train", bundle, overrides, result, log=log)))
        if dry_run:  # two CPU cores: one at a time
            processes[-1][3].wait()
    rows = []
    for bundle, result, log, process in processes:
        process.wait()
        log.close()
        if result.is_file():
            rows.append(json.loads(result.read_text()))
        else:
            tail = (work / f"{bundle}.log").read_text()[-600:]
            rows.append({"bundle": bundle, "status": f"failed (exit {process.returncode}): {tail}"})
    (out / "bundles.json").write_text(json.dumps(rows, indent=2))
    return rows


def gpu_check(out_dir: str | None = None, dry_run: bool = False) -> int:
    """Run the three parts; returns the number of parts that failed (the exit status of ci/gpu_check)."""
    import torch

    from xlstm_monai.bench.networks import benchmark_networks

    out = Path(out_dir or os.environ.get("OUT") or "runs/gpu_check")
    out.mkdir(parents=True, exist_ok=True)
    if not dry_run and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a CUDA machine, or pass --dry_run true to run the code paths on CPU")
    started, failures = time.time(), 0
    summary = {"dry_run": dry_run, "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
    )
    summary["gpu_tests"] = tests.stdout.strip().splitlines()[-1] if tests.stdout.strip() else tests.stderr[-300:]
    failures += tests.returncode not in (0, 5)  # 5: nothing collected
    (out / "gpu_tests.txt").write_text(tests.stdout[-20000:])
    print(f"gpu tests: {summary['gpu_tests']}", flush=True)

    sizes = (64,) if dry_run else (64, 96, 128, 160)  # 64^3: the smallest SwinUNETR trains on
    networks = benchmark_networks(
        device="cpu" if dry_run else "cuda",
        train_sizes=sizes,
        infer_sizes=[],
        batch_size=2,
        warmup=0 if dry_run else 2,
        repeats=1 if dry_run else 5,
        output=str(out / "networks.json"),
    )
    failures += any(r.get("status", "").startswith(("error", "crashed")) for r in networks["results"])

    bundles = _bundle_runs(out, 3 if dry_run else 20, dry_run)
    failures += sum("status" in r for r in bundles)
    summary["minutes"] = (time.time() - started) / 60
    summary["command"] = command("gpu-check", out_dir=out_dir, dry_run=dry_run or None)
    write_report(summary, out / "summary.json", format_table(bundles))
    print(f"gpu check: {failures} part(s) failed, {summary['minutes']:.1f} min, JSON in {out}")
    return failures


def format_table(bundles: list[dict]) -> str:
    """One row per bundle: iterations, time per iteration, peak memory, first and last loss (or why it failed)."""
    lines = ["| bundle | iterations | ms / iteration | peak GiB | loss first -> last |", "|---|---|---|---|---|"]
    for row in bundles:
        if "status" in row:
            lines.append(f"| {row['bundle']} | {row['status'][:60]} | | | |")
        else:
            lines.append(
                f"| {row['bundle']} | {row['iterations']} | {row['ms_per_iteration']:.0f} | {row['peak_gib']:.2f} | "
                f"{row['first_loss']:.3f} -> {row['last_loss']:.3f} |"
            )
    return "\n".join(lines)
