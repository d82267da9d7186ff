"""
Network sizes other than the bundles' defaults, defined once: ``SMALL`` is the CPU recipe of the demo, the
benchmarks and the training tests (minutes on 2 cores); ``TINY`` is for the bundle checks and fast tests (seconds).
The bundles' own defaults (embed 384, 12 blocks, 6 heads) are in their configs.
"""

from __future__ import annotations

__all__ = ["SMALL", "TINY", "overrides"]

TINY = {"embed_dim": 48, "depth": 2, "num_heads": 2}
SMALL = {"embed_dim": 96, "depth": 4, "num_heads": 2}


def overrides(preset: dict, prefix: str = "network_def", **extra) -> dict:
    """The preset (plus ``extra`` network settings) as bundle config overrides, e.g. ``network_def#embed_dim``."""
    return {f"{prefix}#{key}": value for key, value in {**preset, **extra}.items()}
