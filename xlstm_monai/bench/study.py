"""
What every benchmark shares: the record it writes, the command it was run by, the key of its cached units, its
mean +- sd and paired differences, and the guard that keeps the tuning fold out of the reported folds.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["cache_key", "check_tune_fold", "command", "mean_sd", "paired_differences", "write_report"]

CLI_NAMES = ("xlstm-monai", "cli.py")  # the console script, and ``python -m xlstm_monai.cli``


def write_report(report: dict, output: str | Path, table: str | None = None) -> dict:
    """Write ``report`` as JSON to ``output`` (its folder made), print ``table`` and ``written: output``."""
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    if table:
        print(table)
    print(f"written: {output}")
    return report


def _option(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, Mapping):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def command(name: str, **arguments) -> str:
    """
    The command that made a record: the real invocation when run from the command line (``xlstm-monai ...`` or
    ``python -m xlstm_monai.cli ...``), else ``xlstm-monai bench <name>`` with ``arguments`` (those not None) as its
    options, lists joined by commas and mappings as JSON, so that the line runs as written.
    """
    if Path(sys.argv[0]).name in CLI_NAMES:
        return "xlstm-monai " + shlex.join(sys.argv[1:])
    options = [part for k, v in arguments.items() if v is not None for part in (f"--{k}", _option(v))]
    return shlex.join(["xlstm-monai", "bench", *name.split(), *options])


def cache_key(*settings) -> str:
    """Short sha1 of the settings a cached unit depends on: other settings, another cache folder."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]


def mean_sd(values: Sequence[float], digits: int = 3, signed: bool = False) -> str:
    """``mean +- sd`` (sample sd; 0 for a single value), e.g. ``0.871 +- 0.012`` or, signed, ``+1.2 +- 0.4``."""
    values = np.asarray(values, dtype=float)
    sd = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean() if len(values) else np.nan:{'+' if signed else ''}.{digits}f} +- {sd:.{digits}f}"


def paired_differences(
    values: Mapping[Hashable, float], reference: Mapping[Hashable, float], scale: float = 100.0
) -> dict[Hashable, float]:
    """``scale * (values - reference)`` for every key (fold, or fold and seed) both have: in points of Dice."""
    return {key: scale * (value - reference[key]) for key, value in values.items() if key in reference}


def check_tune_fold(tune_fold: int, folds: Sequence[int]) -> None:
    """The fold that learning rates are chosen on must not be a reported fold."""
    if tune_fold in folds:
        raise ValueError(f"the tuning fold {tune_fold} must not be a reported fold {tuple(folds)}")
