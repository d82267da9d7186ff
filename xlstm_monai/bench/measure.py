"""
Measurements of one bundle workflow in a fresh process, so that its peak memory is its own:

- ``inference``: the bundle's inference.yaml, the seconds of each volume (reading, preprocessing, inference,
  inversion, saving) and the process's peak resident set;
- ``train``: the bundle's train.yaml, the milliseconds of a training step (median, past the first steps that compile
  kernels), its first and last loss, and the peak memory (CUDA's peak allocation, or the peak resident set).

:func:`start` runs one as ``python -m xlstm_monai.bench.measure KIND BUNDLE OVERRIDES OUT``; the result is JSON in OUT.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["measure_inference", "measure_training", "start"]

MODULE = "xlstm_monai.bench.measure"


def _workflow(bundle: str, config: str, workflow_type: str, overrides: dict):
    """The bundle's ``config`` as a ConfigWorkflow, initialised."""
    from monai.bundle import ConfigWorkflow

    from xlstm_monai.workflow import bundle_path

    folder = bundle_path(bundle)
    workflow = ConfigWorkflow(
        config_file=str(folder / "configs" / config),
        meta_file=str(folder / "configs" / "metadata.json"),
        logging_file=str(folder / "configs" / "logging.conf"),
        workflow_type=workflow_type,
        **overrides,
    )
    workflow.initialize()
    return workflow


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measure_inference(bundle: str, overrides: dict) -> dict:
    """Run inference.yaml; the seconds of each volume and the peak resident set in GiB."""
    from ignite.engine import Events

    workflow = _workflow(bundle, "inference.yaml", "inference", overrides)
    evaluator = workflow.parser.get_parsed_content("evaluator")
    stamps = []  # the start, then the end of each volume
    evaluator.add_event_handler(Events.STARTED, lambda e: stamps.append(time.perf_counter()))
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: stamps.append(time.perf_counter()))
    workflow.run()
    return {"seconds": [b - a for a, b in zip(stamps, stamps[1:])], "peak_gib": _peak_rss_gib()}


def _loss(output) -> float:
    output = output[0] if isinstance(output, list) else output
    return float(output["loss"])


def measure_training(bundle: str, overrides: dict) -> dict:
    """Run train.yaml; the median step time, the first and last loss, and the peak memory in GiB."""
    import torch
    from ignite.engine import Events

    workflow = _workflow(bundle, "train.yaml", "train", overrides)
    trainer = workflow.parser.get_parsed_content("train#trainer")
    stamps, losses = [], []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: stamps.append(time.perf_counter()))
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(_loss(e.state.output)))
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    workflow.run()
    steps = [b - a for a, b in zip(stamps, stamps[1:])]
    steps = sorted(steps[2:] if len(steps) > 4 else steps or [0.0])  # the first steps compile kernels
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else _peak_rss_gib()
    return {
        "bundle": bundle,
        "iterations": trainer.state.iteration,
        "ms_per_iteration": 1000 * steps[len(steps) // 2],
        "peak_gib": peak,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "finite": all(torch.isfinite(torch.tensor(losses)).tolist()),
    }


MEASUREMENTS = {"inference": measure_inference, "train": measure_training}


def start(kind: str, bundle: str, overrides: dict, out: Path, threads: int | None = None, log=None):
    """Start one measurement in a fresh Python process (a :class:`subprocess.Popen`); it writes its JSON to ``out``.
    ``threads``: the process's CPU threads; ``log``: a file for its output (default: captured)."""
    args = [sys.executable, "-m", MODULE, kind, bundle, json.dumps(overrides), str(out)]
    env = dict(os.environ)
    if threads:
        args += ["--threads", str(threads)]
        env["OMP_NUM_THREADS"] = str(threads)
    output = (
        {"stdout": log, "stderr": subprocess.STDOUT}
        if log
        else {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}
    )
    return subprocess.Popen(args, env=env, text=True, **output)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.strip().splitlines()[0])
    parser.add_argument("kind", choices=sorted(MEASUREMENTS))
    parser.add_argument("bundle")
    parser.add_argument("overrides", help="the bundle config overrides, as JSON")
    parser.add_argument("out", help="the JSON file the result is written to")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = MEASUREMENTS[args.kind](args.bundle, json.loads(args.overrides))
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
