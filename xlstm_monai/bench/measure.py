"""
Measurements of one bundle workflow in a fresh process, so that its peak memory is its own:

- ``inference``: the bundle's inference.yaml, the seconds of each volume (reading, preprocessing, inference,
  inversion, saving) and the process's peak resident set;
- ``train``: the bundle's train.yaml, the milliseconds of a training step (median, past the first steps that compile
  kernels), its first and last loss, and the peak memory (CUDA's peak allocation, or the peak resident set);
- ``pretrain``: pretrain_ssl's train.yaml (and the overlays named in the overrides' ``overlays``) for the
  overrides' ``steps`` steps: the seconds to list the images and to the first step, every step's seconds, and the peak
  memory of the process with its data-loading workers (proportional set size, so shared pages count once);
- ``loader``: the same configs' training data loader alone, without the network: seconds per batch.

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

__all__ = ["TreeMemory", "measure_inference", "measure_loader", "measure_pretraining", "measure_training", "start"]

MODULE = "xlstm_monai.bench.measure"


def _workflow(bundle: str, config: str | list[str], workflow_type: str, overrides: dict, initialize: bool = True):
    """The bundle's ``config`` (a file name, or a list: a config and its overlays) as a ConfigWorkflow, initialised
    unless ``initialize`` is False."""
    from monai.bundle import ConfigWorkflow

    from xlstm_monai.workflow import bundle_path

    folder = bundle_path(bundle)
    configs = [str(folder / "configs" / c) for c in ([config] if isinstance(config, str) else config)]
    workflow = ConfigWorkflow(
        config_file=configs if len(configs) > 1 else configs[0],
        meta_file=str(folder / "configs" / "metadata.json"),
        logging_file=str(folder / "configs" / "logging.conf"),
        workflow_type=workflow_type,
        **overrides,
    )
    if initialize:
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


class TreeMemory:
    """
    The peak memory of this process and its children (data-loading workers), sampled every ``interval`` seconds
    from Linux's ``/proc/<pid>/smaps_rollup``: the proportional set size, so pages the forked workers share with the
    main process count once. Elsewhere it reports this process's peak resident set.
    """

    def __init__(self, interval: float = 0.5) -> None:
        import threading

        self.interval, self.peak_gib = interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _tree(pid: int) -> list[int]:
        pids, queue = [], [pid]
        while queue:
            current = queue.pop()
            pids.append(current)
            for task in Path(f"/proc/{current}/task").glob("*/children"):
                try:
                    queue += [int(c) for c in task.read_text().split()]
                except OSError:
                    continue
        return pids

    @staticmethod
    def _pss_gib(pid: int) -> float:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 2**20
        except OSError:
            pass
        return 0.0

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_gib = max(self.peak_gib, sum(self._pss_gib(p) for p in self._tree(os.getpid())))
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemory:
        if Path(f"/proc/{os.getpid()}/smaps_rollup").is_file():
            self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()
        else:
            self.peak_gib = _peak_rss_gib()


def _pretraining(overrides: dict):
    """pretrain_ssl's workflow (train.yaml and ``overlays``), not yet initialised, and the steps to run."""
    overrides = dict(overrides)
    configs = ["train.yaml", *overrides.pop("overlays", [])]
    steps = int(overrides.pop("steps"))
    return _workflow("pretrain_ssl", configs, "train", overrides, initialize=False), steps


def measure_pretraining(bundle: str, overrides: dict) -> dict:
    """pretrain_ssl for ``steps`` steps: seconds to the image list and to the first step, each step's seconds, and
    the peak memory of the process tree. ``bundle`` is pretrain_ssl."""
    from ignite.engine import Events

    began = time.perf_counter()
    with TreeMemory() as memory:
        workflow, steps = _pretraining(overrides)
        images = workflow.parser.get_parsed_content("images")
        listed = time.perf_counter()
        workflow.initialize()
        trainer = workflow.parser.get_parsed_content("train#trainer")
        stamps = []
        trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: stamps.append(time.perf_counter()))
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=steps), lambda e: e.terminate())
        started = time.perf_counter()
        workflow.run()
    return {
        "images": len(images),
        "list_seconds": listed - began,
        "setup_seconds": started - listed,
        "first_step_seconds": stamps[0] - began,
        "step_seconds": [b - a for a, b in zip(stamps, stamps[1:])],
        "peak_gib": memory.peak_gib,
    }


def measure_loader(bundle: str, overrides: dict) -> dict:
    """The pretraining data loader alone for ``steps`` batches: seconds per batch past the first, and peak memory."""
    began = time.perf_counter()
    with TreeMemory() as memory:
        workflow, steps = _pretraining(overrides)
        loader = workflow.parser.get_parsed_content("train#dataloader")
        stamps = [time.perf_counter()]
        for step, _ in enumerate(loader, 1):
            stamps.append(time.perf_counter())
            if step == steps:
                break
    return {
        "first_batch_seconds": stamps[1] - began,
        "batch_seconds": [b - a for a, b in zip(stamps[1:], stamps[2:])],
        "peak_gib": memory.peak_gib,
    }


MEASUREMENTS = {
    "inference": measure_inference,
    "train": measure_training,
    "pretrain": measure_pretraining,
    "loader": measure_loader,
}


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
