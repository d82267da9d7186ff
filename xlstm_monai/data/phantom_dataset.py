"""
The datalist a bundle run needs, made on first use: from the user's dataset folder, or from generated phantoms.

A bundle's ``initialize``-time data step calls :func:`prepare_datalist`:

* the datalist exists: it is used as is;
* ``dataset_dir`` holds a dataset in a layout the datalist builder reads (MM-WHS names, an MSD ``dataset.json``,
  paired ``imagesTr``/``labelsTr`` folders, a CSV participants table): the datalist is built from it, with folds;
* ``dataset_dir`` is absent or empty and phantoms are enabled: phantoms of the bundle's kind are written there (in
  the same real layouts) and the datalist is built from them.

Phantoms are never written into a folder that holds anything but earlier phantoms, so a mistyped path to real
data cannot get synthetic cases mixed into it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import torch.distributed as dist

from .datalist import build_datalist
from .phantoms import write_brain_phantoms, write_heart_phantoms, write_hippocampus_phantoms

__all__ = ["PHANTOM_KINDS", "MARKER", "prepare_datalist"]

PHANTOM_KINDS = ("heart_ct", "heart_mr", "heart_ct_mr", "hippocampus", "brain")
MARKER = "PHANTOMS.json"  # written into a generated folder; its presence marks the folder as ours
_CSV_NAME = "participants.csv"  # the table the brain phantoms write and classification folders are read from


def _write_phantoms(kind: str, dataset_dir: str, num_cases: int, shape, spacing, seed: int) -> None:
    if kind in ("heart_ct", "heart_mr", "heart_ct_mr"):
        modalities = {"heart_ct": ["ct"], "heart_mr": ["mr"], "heart_ct_mr": ["ct", "mr"]}[kind]
        for modality in modalities:
            write_heart_phantoms(dataset_dir, num_cases, modality, shape or (96, 96, 96), spacing or (1.5,) * 3, seed)
    elif kind == "hippocampus":
        write_hippocampus_phantoms(dataset_dir, num_cases, shape or (36, 50, 36), spacing or (1.0,) * 3, seed)
    else:
        write_brain_phantoms(dataset_dir, num_cases, shape or (80, 96, 80), spacing or (2.0,) * 3, seed)
    with open(os.path.join(dataset_dir, MARKER), "w") as handle:
        json.dump({"generated_by": "xlstm_monai.data.prepare_datalist", "kind": kind, "num_cases": num_cases,
                   "shape": shape, "spacing": spacing, "seed": seed}, handle, indent=2)


def _source(dataset_dir: str) -> str:
    """What build_datalist reads: the participants table of a classification folder, else the folder."""
    table = os.path.join(dataset_dir, _CSV_NAME)
    return table if os.path.isfile(table) else dataset_dir


def prepare_datalist(
    dataset_dir: str,
    datalist: str,
    phantoms: str = "heart_ct",
    num_phantoms: int = 12,
    num_folds: int = 3,
    seed: int = 0,
    generate_phantoms: bool = True,
    shape: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    **datalist_args,
) -> str:
    """
    Make sure ``datalist`` exists (see the module docstring) and return its path. In a distributed run rank 0
    writes while the others wait.

    Args:
        dataset_dir: the dataset folder (the datalist's paths are relative to it).
        datalist: the datalist JSON path.
        phantoms: phantom kind for an empty ``dataset_dir``, one of :data:`PHANTOM_KINDS`.
        num_phantoms: phantom cases (per modality for "heart_ct_mr").
        num_folds, seed: folds of a built datalist.
        generate_phantoms: allow writing phantoms into an empty or absent ``dataset_dir``.
        shape, spacing: phantom size; the kind's default when None.
        datalist_args: further :func:`build_datalist` arguments (e.g. ``target`` and ``classes`` for a CSV).

    Raises:
        FileNotFoundError: nothing to build from and phantoms disabled.
        ValueError: ``kind`` unknown, or the folder's layout unreadable (the builder's message says why).
    """
    if os.path.isfile(datalist):
        return datalist
    if phantoms not in PHANTOM_KINDS:
        raise ValueError(f"unknown phantom kind {phantoms!r}; choose from {PHANTOM_KINDS}")
    has_files = os.path.isdir(dataset_dir) and bool(os.listdir(dataset_dir))
    ours = os.path.isfile(os.path.join(dataset_dir, MARKER))
    if not has_files and not generate_phantoms:
        raise FileNotFoundError(
            f"datalist {datalist} not found and {dataset_dir} holds no data. Point dataset_dir at your dataset "
            f"(or build a datalist with `xlstm-monai datalist --source DATASET --output {datalist}`), or set "
            "generate_phantoms true to use generated phantoms."
        )
    distributed = dist.is_available() and dist.is_initialized()
    if not distributed or dist.get_rank() == 0:
        if not has_files:
            os.makedirs(dataset_dir, exist_ok=True)
            _write_phantoms(phantoms, dataset_dir, num_phantoms, shape, spacing, seed)
        if phantoms == "brain" and (ours or not has_files):
            datalist_args = {"target": "Diagnosis", "classes": "CN,AD", **datalist_args}
        build_datalist(_source(dataset_dir), datalist, num_folds=num_folds, seed=seed, base_dir=dataset_dir,
                       **datalist_args)
    if distributed:
        dist.barrier()
    return datalist
