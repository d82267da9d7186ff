"""Running bundle configs from Python the way ``python -m monai.bundle run`` does, for benchmarks and tests."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from monai.bundle import ConfigWorkflow

__all__ = ["bundle_path", "read_structure_metrics", "run_workflow", "shared_dataset"]


def bundle_path(name: str, bundles_dir: str | None = None) -> Path:
    """Folder of bundle ``name``: under ``bundles_dir``, $XLSTM_MONAI_BUNDLES, or the source checkout's bundles/."""
    root = Path(bundles_dir or os.environ.get("XLSTM_MONAI_BUNDLES", Path(__file__).resolve().parents[2] / "bundles"))
    path = root / name
    if not (path / "configs" / "metadata.json").is_file():
        raise FileNotFoundError(f"bundle {name!r} not found in {root} (pass bundles_dir or set XLSTM_MONAI_BUNDLES)")
    return path


def shared_dataset(name: str, data_dir: str | None = None) -> Path:
    """Folder of a real dataset: ``data_dir``, else $XLSTM_MONAI_DATA/name, else ../shared/data/name beside the checkout."""
    if data_dir:
        return Path(data_dir)
    return Path(os.environ.get("XLSTM_MONAI_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")) / name


def run_workflow(bundle: str | Path, configs: list[str], workflow_type: str, **overrides) -> ConfigWorkflow:
    """Build, initialise, check, run and finalise a bundle workflow (``bundle``: a name or a folder)."""
    folder = Path(bundle) if Path(bundle).is_dir() else bundle_path(str(bundle))
    files = [str(folder / "configs" / c) for c in configs]
    workflow = ConfigWorkflow(
        config_file=files if len(files) > 1 else files[0],
        meta_file=str(folder / "configs" / "metadata.json"),
        logging_file=str(folder / "configs" / "logging.conf"),
        workflow_type=workflow_type,
        **overrides,
    )
    workflow.initialize()
    missing = workflow.check_properties()
    if missing:
        raise ValueError(f"{folder.name} {configs} misses bundle properties {missing}")
    workflow.run()
    workflow.finalize()
    return workflow


def read_structure_metrics(output_dir: str | Path) -> dict[str, dict[str, float]]:
    """per_structure_metrics.csv written by PerStructureMetrics, as {structure: {metric: value}}."""
    with open(Path(output_dir) / "per_structure_metrics.csv") as handle:
        return {row.pop("structure"): {k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)}
