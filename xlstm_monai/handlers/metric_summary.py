"""Per-structure summary of segmentation metrics, in the log and as a CSV named by structure."""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Sequence

import torch
from ignite.engine import Engine, Events

__all__ = ["PerStructureMetrics"]


class PerStructureMetrics:
    """
    Log the mean of each metric per structure when an evaluation completes, and write them to
    ``output_dir/per_structure_metrics.csv`` (rows: structures, columns: metrics, plus the number of cases).

    MONAI's ``MetricsSaver`` keeps per-case details with numbered class columns; this names the structures, which
    is what a reader of the log wants. Metrics must be computed with ``save_details=True`` (MONAI's default), and
    with ``include_background=False`` so that column k is structure k+1.

    Args:
        metric_names: keys of ``engine.state.metric_details`` to summarise (e.g. ``["val_mean_dice", "val_hd95"]``).
        structure_names: name of each foreground structure, in channel order.
        output_dir: where to write the CSV; None to only log.
        name: logger name. Defaults to the engine's logger.
    """

    def __init__(
        self,
        metric_names: Sequence[str],
        structure_names: Sequence[str],
        output_dir: str | None = None,
        name: str | None = None,
    ) -> None:
        self.metric_names = list(metric_names)
        self.structure_names = list(structure_names)
        self.output_dir = output_dir
        self.logger = logging.getLogger(name) if name else None
        self.summary: dict[str, dict[str, float]] = {}

    def attach(self, engine: Engine) -> None:
        if self.logger is None:
            self.logger = engine.logger
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        details = getattr(engine.state, "metric_details", {}) or {}
        summary: dict[str, dict[str, float]] = {s: {} for s in self.structure_names}
        counts: dict[str, int] = {}
        for metric in self.metric_names:
            values = details.get(metric)
            if values is None:
                continue
            values = torch.as_tensor(values, dtype=torch.float64).reshape(-1, len(self.structure_names))
            finite = torch.isfinite(values)
            for k, structure in enumerate(self.structure_names):
                column = values[:, k][finite[:, k]]
                summary[structure][metric] = column.mean().item() if column.numel() else math.nan
            counts[metric] = values.shape[0]
        self.summary = summary
        if not counts:
            self.logger.warning(f"no metric details for {self.metric_names}; were they computed with save_details?")
            return
        header = " | ".join(f"{m:>14s}" for m in self.metric_names)
        lines = [f"per-structure metrics ({max(counts.values())} cases):", f"{'structure':>20s} | {header}"]
        for structure, row in summary.items():
            lines.append(
                f"{structure:>20s} | " + " | ".join(f"{row.get(m, math.nan):14.4f}" for m in self.metric_names)
            )
        self.logger.info("\n".join(lines))
        if self.output_dir:
            os.makedirs(self.output_dir, exist_ok=True)
            with open(os.path.join(self.output_dir, "per_structure_metrics.csv"), "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["structure", *self.metric_names, "cases"])
                for structure, row in summary.items():
                    writer.writerow(
                        [structure, *(f"{row.get(m, math.nan):.6f}" for m in self.metric_names), max(counts.values())]
                    )
