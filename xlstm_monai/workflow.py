"""Running bundle configs from Python the way ``python -m monai.bundle run`` does: for the demo, releases, benchmarks
and tests. The bundles ship inside the package (``xlstm_monai.bundles``), so this works from a wheel as from a
checkout."""

from __future__ import annotations

import csv
import os
from importlib.resources import files
from pathlib import Path

from monai.bundle import ConfigWorkflow

__all__ = ["bundle_path", "bundles_dir", "read_structure_metrics", "run_workflow"]


def bundles_dir() -> Path:
    """The folder of the installed bundles: $XLSTM_MONAI_BUNDLES, else the package's own ``xlstm_monai.bundles``."""
    override = os.environ.get("XLSTM_MONAI_BUNDLES")
    return Path(override) if override else Path(str(files("xlstm_monai.bundles")))


def bundle_path(name: str, folder: str | os.PathLike | None = None) -> Path:
    """Folder of bundle ``name``, under ``folder`` or :func:`bundles_dir`."""
    root = Path(folder) if folder else bundles_dir()
    path = root / name
    if not (path / "configs" / "metadata.json").is_file():
        raise FileNotFoundError(f"bundle {name!r} not found in {root} (set XLSTM_MONAI_BUNDLES to the bundles folder)")
    return path


def run_workflow(bundle: str | Path, configs: list[str], workflow_type: str, **overrides) -> ConfigWorkflow:
    """Build, initialise, check, run and finalise a bundle workflow (``bundle``: a name or a folder)."""
    folder = Path(bundle) if Path(bundle).is_dir() else bundle_path(str(bundle))
    config_files = [str(folder / "configs" / c) for c in configs]
    workflow = ConfigWorkflow(
        config_file=config_files if len(config_files) > 1 else config_files[0],
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
