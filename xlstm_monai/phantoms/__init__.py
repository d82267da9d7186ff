"""Synthetic 3D phantoms written as NIfTI: the embedded default data of the bundles.

They let every bundle run (demo, CPU tests, small training runs) without a download, while looking enough like
the real modality that transforms, intensity windows and networks behave as on real data:

* ``heart_phantom``: MM-WHS-like whole-heart CT (Hounsfield units) or bright-blood MRI, 7 labelled structures
  embedded in a torso with lungs, fat and spine.
* ``hippocampus_phantom``: Medical Segmentation Decathlon Task04-like T1 crop, anterior/posterior labels.
* ``brain_phantom``: IXI-like 2 mm T1 head whose anatomy carries a CN / AD class signal (ventricles, hippocampi,
  sulci) with realistic within-class variation.

All geometry is defined in millimetres on a RAS world grid centred on (0, 0, 0), so anatomy keeps its physical
size whatever ``shape`` and ``spacing`` are. Everything is vectorised numpy (implicit shapes, B-spline random
fields, separable blurs), so a default-size phantom takes a fraction of a second on a small CPU. Case ``i`` of a
set uses ``seed + i``, which makes every written set reproducible.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from .brain import brain_phantom, write_brain_phantoms
from .heart import heart_phantom, write_heart_phantoms
from .hippocampus import hippocampus_phantom, write_hippocampus_phantoms

__all__ = [
    "MARKER",
    "PHANTOM_KINDS",
    "brain_phantom",
    "heart_phantom",
    "hippocampus_phantom",
    "write_brain_phantoms",
    "write_heart_phantoms",
    "write_hippocampus_phantoms",
    "write_phantoms",
]

PHANTOM_KINDS = ("heart_ct", "heart_mr", "heart_ct_mr", "hippocampus", "brain")
MARKER = "PHANTOMS.json"  # written into a generated folder: what is in it, and that it is not a user's data


def write_phantoms(
    kind: str,
    out_dir: str,
    num_cases: int,
    shape: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    seed: int = 0,
) -> None:
    """A bundle's default data: ``num_cases`` phantoms of ``kind`` in its real layout, and the :data:`MARKER`."""
    if kind not in PHANTOM_KINDS:
        raise ValueError(f"unknown phantom kind {kind!r}; choose from {PHANTOM_KINDS}")
    if kind.startswith("heart"):
        modalities = {"heart_ct": ["ct"], "heart_mr": ["mr"], "heart_ct_mr": ["ct", "mr"]}[kind]
        for modality in modalities:
            write_heart_phantoms(out_dir, num_cases, modality, shape or (96, 96, 96), spacing or (1.5,) * 3, seed)
    elif kind == "hippocampus":
        write_hippocampus_phantoms(out_dir, num_cases, shape or (36, 50, 36), spacing or (1.0,) * 3, seed)
    else:
        write_brain_phantoms(out_dir, num_cases, shape or (80, 96, 80), spacing or (2.0,) * 3, seed)
    with open(os.path.join(out_dir, MARKER), "w") as handle:
        json.dump(
            {
                "generated_by": "xlstm_monai",
                "kind": kind,
                "num_cases": num_cases,
                "shape": shape,
                "spacing": spacing,
                "seed": seed,
            },
            handle,
            indent=2,
        )
