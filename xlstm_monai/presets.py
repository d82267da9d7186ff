"""
Network sizes and short-run recipes other than the bundles' defaults, defined once: ``SMALL`` is the CPU recipe of
the demo, the benchmarks and the training tests (minutes on 2 cores); ``HIPPOCAMPUS_CPU`` is ``SMALL`` with the
narrow decoder of every hippocampus benchmark on the CPU; ``TINY`` is for the bundle checks and fast tests
(seconds), and ``SMOKE`` the short runs of every bundle built on it. The bundles' own defaults (embed 384, 12
blocks, 6 heads) are in their configs.
"""

from __future__ import annotations

__all__ = ["HIPPOCAMPUS_CPU", "SMALL", "SMOKE", "TINY", "overrides"]

TINY = {"embed_dim": 48, "depth": 2, "num_heads": 2}
SMALL = {"embed_dim": 96, "depth": 4, "num_heads": 2}
HIPPOCAMPUS_CPU = {**SMALL, "feature_size": 8}  # the CPU recipe of every hippocampus benchmark


def overrides(preset: dict, prefix: str = "network_def", **extra) -> dict:
    """The preset (plus ``extra`` network settings) as bundle config overrides, e.g. ``network_def#embed_dim``."""
    return {f"{prefix}#{key}": value for key, value in {**preset, **extra}.items()}


_TINY_UNET = overrides(TINY, feature_size=8)
_QUICK = {"num_workers": 0, "cache_rate": 0.0, "epochs": 1, "val_interval": 1, "warmup_epochs": 0}

# the short runs of the bundle checks (release/verify.py), the GPU check's dry run and the tests, per bundle:
# "network"/"shape" overrides shared by every config (network size, resampling, crop); "train" extras; "images":
# where the generated phantoms to run inference on lie, under bundle_root
SMOKE = {
    "heart_seg_ct": {
        "network": {**_TINY_UNET, "spacing": [4.5, 4.5, 4.5], "roi_size": [32, 32, 32]},
        "train": {**_QUICK, "num_phantoms": 6, "num_samples": 1},
        "images": "data/phantoms_ct",
    },
    "heart_seg_mri": {
        "network": {**_TINY_UNET, "spacing": [4.5, 4.5, 4.5], "roi_size": [32, 32, 32]},
        "train": {**_QUICK, "num_phantoms": 6, "num_samples": 1},
        "images": "data/phantoms_mr",
    },
    "brain_hippocampus": {
        "network": dict(_TINY_UNET),
        "train": {**_QUICK, "num_phantoms": 10, "batch_size": 2},
        "images": "data/phantoms_hippocampus/imagesTr",
    },
    "brain_cls": {
        "network": {
            **overrides(TINY),
            "spacing": [4.0, 4.0, 4.0],
            "field_of_view": [48, 56, 48],
        },
        "train": {**_QUICK, "num_phantoms": 10, "batch_size": 2},
        "images": "data/phantoms_brain/images",
    },
    "pretrain_ssl": {
        "network": {
            **overrides(TINY, prefix="encoder_def"),
            "spacing": [4.5, 4.5, 4.5],
            "global_size": [32, 32, 32],
            "local_size": [16, 16, 16],
            "num_local": 2,
            "out_dim": 128,
            "patch_out_dim": 128,
            "network_def#hidden_dim": 128,
            "network_def#bottleneck_dim": 32,
        },
        "train": {**_QUICK, "num_phantoms": 2, "batch_size": 2},
        "images": None,
    },
}
