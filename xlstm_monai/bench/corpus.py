"""
The pretraining data path at corpus sizes this repository does not hold, simulated on this machine: brain crops
synthesised from the SynthSeg label maps (:mod:`xlstm_monai.data.synthesis`), 2,000 and 10,000 volumes in folders of
1,000, and pretrain_ssl's brain-MRI recipe (train.yaml + brain_mri.yaml) on each for a few steps with the
large-corpus setting (``dataset_cache: disk``, the folder searched recursively), beside the same steps with every
image pre-loaded (``dataset_cache: memory``) on the smallest corpus. Each unit runs in a fresh process (its memory is
its own) with a fresh bundle folder and an empty cache, so it pays the one-off list building and reads every image
cold, as the first epoch over a new corpus does. Each unit's figures are cached; the table gives ratios.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from pathlib import Path

from xlstm_monai.bench.datasets import shared_dataset
from xlstm_monai.bench.measure import start
from xlstm_monai.bench.study import command
from xlstm_monai.data.synthesis import write_synthetic_images

__all__ = ["benchmark_corpus"]

OVERLAYS = ["brain_mri.yaml"]
SETTLE = 5  # steps left out of the steady step time: the first ones allocate and warm the caches


def _corpora(work: Path, sizes: tuple[int, ...], label_dir: Path, workers: int) -> dict[int, Path]:
    """The synthetic corpora: the largest is written (resumably), the smaller ones are hard links to its first
    images, each in its own folder."""
    began = time.time()
    files = write_synthetic_images(label_dir, work / "synthetic", max(sizes), workers=workers)
    record = work / "synthetic.json"
    if not record.is_file():
        record.write_text(json.dumps({"images": max(sizes), "write_seconds": time.time() - began}))
    corpora = {}
    for size in sizes:
        folder = corpora[size] = work / f"corpus_{size}"
        for file in files[:size]:
            link = folder / file.parent.name / file.name
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                os.link(file, link)
    return corpora


def _folder_mib(folder: Path) -> tuple[float, int]:
    files = [f for f in folder.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files) / 2**20, len(files)


def _unit(work: Path, kind: str, cache: str, corpus: Path, steps: int, threads: int) -> dict:
    """One measurement (cached): ``kind`` "pretrain" or "loader", with ``cache`` "disk" or "memory"."""
    name = f"{kind}_{cache}_{corpus.name}"
    result_file = work / "units" / f"{name}.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    root = work / "bundles" / name
    if root.exists():
        shutil.rmtree(root)  # an interrupted unit starts again, with an empty cache
    root.mkdir(parents=True)
    overrides = {
        "overlays": OVERLAYS,
        "steps": steps,
        "bundle_root": str(root),
        "dataset_dir": str(corpus),
        "default_modality": "MRI",
        "dataset_cache": cache,
        "resume": False,
    }
    out = root / "measurement.json"
    print(f"{name}: {steps} steps")
    with open(root / "log.txt", "w") as log:
        process = start(kind, "pretrain_ssl", overrides, out, threads=threads, log=log)
        if process.wait() != 0:
            raise RuntimeError(f"{name} failed: see {root / 'log.txt'}")
    result = {"unit": name, "kind": kind, "cache": cache, "corpus": corpus.name, **json.loads(out.read_text())}
    if cache == "disk":
        result["cache_mib"], result["cache_files"] = _folder_mib(root / "cache")
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(result, indent=1))
    return result


def _steady(seconds: list[float]) -> float:
    return statistics.median(seconds[SETTLE:] if len(seconds) > 2 * SETTLE else seconds)


def benchmark_corpus(
    sizes: tuple[int, ...] = (2000, 10000),
    steps: int = 60,
    loader_steps: int = 200,
    threads: int = 2,
    data_dir: str | None = None,
    work_dir: str = "runs/bench_corpus",
    output: str = "docs/results/pretraining_corpus.json",
) -> dict:
    """Run the units (cached) and write the record: per unit, the figures of :func:`measure.measure_pretraining` or
    :func:`measure.measure_loader`, and a summary with the ratios the targets ask for."""
    label_dir = shared_dataset("synthseg_label_maps", data_dir) / "label_maps"
    work = Path(work_dir)
    sizes = tuple(sorted(int(s) for s in sizes))
    corpora = _corpora(work, sizes, label_dir, threads)
    units = []
    for size in sizes:
        units.append(_unit(work, "loader", "disk", corpora[size], loader_steps, threads))
        units.append(_unit(work, "pretrain", "disk", corpora[size], steps, threads))
    units.append(_unit(work, "pretrain", "memory", corpora[sizes[0]], steps, threads))

    runs = {(u["kind"], u["cache"], u["corpus"]): u for u in units}
    small, large = f"corpus_{sizes[0]}", f"corpus_{sizes[-1]}"
    preloaded = runs[("pretrain", "memory", small)]
    rows = []
    for u in units:
        per_step = _steady(u.get("step_seconds") or u["batch_seconds"])
        row = {
            "unit": u["unit"],
            "images": u.get("images"),
            "list_s": u.get("list_seconds"),
            "first_step_s": u.get("first_step_seconds", u.get("first_batch_seconds")),
            "step_s": per_step,
            "peak_gib": u["peak_gib"],
            "cache_mib_per_image": u["cache_mib"] / max(u["cache_files"], 1) if "cache_mib" in u else None,
        }
        if u["kind"] == "pretrain":
            row["step_vs_preloaded"] = per_step / _steady(preloaded["step_seconds"])
        rows.append(row)
    disk_small, disk_large = runs[("pretrain", "disk", small)], runs[("pretrain", "disk", large)]
    summary = {
        "peak_large_vs_small": disk_large["peak_gib"] / disk_small["peak_gib"],
        "first_step_large_vs_small": disk_large["first_step_seconds"] / disk_small["first_step_seconds"],
        "step_disk_vs_preloaded": _steady(disk_small["step_seconds"]) / _steady(preloaded["step_seconds"]),
        "step_disk_large_vs_preloaded": _steady(disk_large["step_seconds"]) / _steady(preloaded["step_seconds"]),
        "loader_batch_s_vs_step_s": _steady(runs[("loader", "disk", large)]["batch_seconds"])
        / _steady(disk_large["step_seconds"]),
    }
    record = {
        "command": command("corpus", sizes=list(sizes), steps=steps, loader_steps=loader_steps, threads=threads),
        "settings": {
            "configs": ["train.yaml", *OVERLAYS],
            "threads": threads,
            "steps": steps,
            "loader_steps": loader_steps,
            "settle_steps": SETTLE,
        },
        "corpus": {
            **json.loads((work / "synthetic.json").read_text()),
            "mib": {f"corpus_{s}": _folder_mib(corpora[s])[0] for s in sizes},
            "settings": json.loads((work / "synthetic" / "corpus.json").read_text()),
        },
        "summary": summary,
        "table": rows,
        "units": units,
    }
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(record, indent=1))
    columns = ("images", "list s", "1st step s", "step s", "vs pre", "peak GiB", "MiB/img")
    print(f"{'unit':34} " + " ".join(f"{c:>{max(len(c), 7)}}" for c in columns))
    for r in rows:
        vs = f"{r['step_vs_preloaded']:.2f}" if "step_vs_preloaded" in r else "-"
        per = f"{r['cache_mib_per_image']:.2f}" if r["cache_mib_per_image"] else "-"
        print(
            f"{r['unit']:34} {r['images'] or '-':>7} {r['list_s'] or 0:7.1f} {r['first_step_s']:10.1f} "
            f"{r['step_s']:7.2f} {vs:>7} {r['peak_gib']:8.2f} {per:>7}"
        )
    print(json.dumps(summary, indent=1))
    return record
