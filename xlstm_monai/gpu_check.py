"""
The GPU measurements in one call, for a lent H100/H200 (``ci/gpu_check``), in well under 8 minutes:

1. the ``gpu``-marked tests (Triton mLSTM kernels against the CPU kernel);
2. ``bench networks``: a training step of XLSTMUNet beside MONAI's UNet, SegResNet, UNETR and SwinUNETR at
   64^3, 96^3, 128^3 and 160^3, batch 2, bf16, one process each (out of memory is recorded as such);
3. 20 training iterations of every bundle's default network on its phantoms, the five bundles side by side (peak
   memory: CUDA's peak allocation; on the CPU the process's peak resident set);

then one JSON per part under ``out_dir`` and one printed table. ``dry_run`` runs the same code paths on the CPU at
tiny sizes (CI runs it, so the script cannot rot before a GPU is lent).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["gpu_check"]

BUNDLES = ("heart_seg_ct", "heart_seg_mri", "brain_hippocampus", "brain_cls", "pretrain_ssl")

_BUNDLE_RUN = """
import json, sys, time, torch
from ignite.engine import Events
from monai.bundle import ConfigWorkflow
from xlstm_monai.workflow import bundle_path
bundle, overrides, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
folder = bundle_path(bundle)
workflow = ConfigWorkflow(config_file=str(folder / "configs" / "train.yaml"),
                          meta_file=str(folder / "configs" / "metadata.json"),
                          logging_file=str(folder / "configs" / "logging.conf"), workflow_type="train", **overrides)
workflow.initialize()
trainer = workflow.parser.get_parsed_content("train#trainer")
stamps, losses = [], []
trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: stamps.append(time.perf_counter()))
def loss_of(output):
    output = output[0] if isinstance(output, list) else output
    return float(output["loss"])
trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(loss_of(e.state.output)))
if torch.cuda.is_available():
    torch.cuda.reset_peak_memory_stats()
workflow.run()
steps = [b - a for a, b in zip(stamps, stamps[1:])]
steps = sorted(steps[2:] if len(steps) > 4 else steps or [0.0])  # the first steps compile kernels
if torch.cuda.is_available():
    peak = torch.cuda.max_memory_allocated() / 2**30
else:
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
result = {"bundle": bundle, "iterations": trainer.state.iteration, "ms_per_iteration": 1000 * steps[len(steps) // 2],
          "peak_gib": peak, "first_loss": losses[0], "last_loss": losses[-1],
          "finite": all(torch.isfinite(torch.tensor(losses)).tolist())}
open(out, "w").write(json.dumps(result))
"""


def _bundle_overrides(bundle: str, root: Path, iterations: int, dry_run: bool) -> dict:
    """The bundle's default network (a tiny one in a dry run) for ``iterations`` steps, no validation."""
    from xlstm_monai.release.verify import SMOKE

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
        args = [
            sys.executable,
            "-c",
            _BUNDLE_RUN,
            bundle,
            json.dumps(_bundle_overrides(bundle, work / bundle, iterations, dry_run)),
            str(result),
        ]
        log = open(work / f"{bundle}.log", "w")
        processes.append((bundle, result, log, subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)))
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
        raise SystemExit("no CUDA device: run on the GPU machine, or pass --dry_run true to run the code paths on CPU")
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
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("| bundle | iterations | ms / iteration | peak GiB | loss first -> last |\n|---|---|---|---|---|")
    for row in bundles:
        if "status" in row:
            print(f"| {row['bundle']} | {row['status'][:60]} | | | |")
        else:
            peak = f"{row['peak_gib']:.2f}"
            print(
                f"| {row['bundle']} | {row['iterations']} | {row['ms_per_iteration']:.0f} | {peak} | "
                f"{row['first_loss']:.3f} -> {row['last_loss']:.3f} |"
            )
    print(f"gpu check: {failures} part(s) failed, {summary['minutes']:.1f} min, JSON in {out}")
    return failures
