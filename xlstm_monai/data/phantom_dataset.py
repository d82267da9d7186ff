"""
The bundles' embedded default dataset: generated phantoms plus their datalist, written on first use.

A bundle run with no data of the user's calls :func:`prepare_phantom_dataset` from its ``initialize`` section.
The phantoms are ordinary NIfTI files in the real layouts (MM-WHS names, MSD task folder, CSV table), read by the
same loaders and transforms as real data. The function never writes into a folder that holds anything but its own
earlier output, so pointing ``dataset_dir`` at real data without a datalist fails loudly instead of mixing
synthetic cases into it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import torch.distributed as dist

from .datalist import build_datalist
from .phantoms import write_brain_phantoms, write_heart_phantoms, write_hippocampus_phantoms

__all__ = ["PHANTOM_KINDS", "MARKER", "prepare_phantom_dataset"]

PHANTOM_KINDS = ("heart_ct", "heart_mr", "heart_ct_mr", "hippocampus", "brain")
MARKER = "PHANTOMS.json"  # written into a generated folder; its presence marks the folder as ours


def _write(kind: str, dataset_dir: str, num_cases: int, shape, spacing, seed: int) -> dict:
    """Write the phantom files; returns build_datalist keyword arguments for them."""
    if kind in ("heart_ct", "heart_mr", "heart_ct_mr"):
        modalities = {"heart_ct": ["ct"], "heart_mr": ["mr"], "heart_ct_mr": ["ct", "mr"]}[kind]
        for modality in modalities:
            write_heart_phantoms(dataset_dir, num_cases, modality, shape or (96, 96, 96), spacing or (1.5,) * 3, seed)
        return {"kind": "mmwhs"}
    if kind == "hippocampus":
        write_hippocampus_phantoms(dataset_dir, num_cases, shape or (36, 50, 36), spacing or (1.0,) * 3, seed)
        return {"kind": "msd"}
    csv_path = write_brain_phantoms(dataset_dir, num_cases, shape or (80, 96, 80), spacing or (2.0,) * 3, seed)
    return {"kind": "csv", "source": csv_path, "target": "Diagnosis", "classes": "CN,AD"}


def prepare_phantom_dataset(
    dataset_dir: str,
    datalist: str,
    kind: str = "heart_ct",
    num_cases: int = 12,
    shape: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    num_folds: int = 3,
    seed: int = 0,
    enabled: bool = True,
) -> str:
    """
    Make sure ``datalist`` exists: if it does, do nothing; otherwise, when ``enabled``, generate ``num_cases``
    phantoms of ``kind`` into ``dataset_dir`` and write their datalist (``num_folds`` folds). Returns the datalist
    path. In a distributed run rank 0 writes while the others wait.

    Raises:
        FileNotFoundError: the datalist is missing and generation is disabled.
        ValueError: ``dataset_dir`` holds other files (real data without a datalist), or ``kind`` is unknown.
    """
    if os.path.isfile(datalist):
        return datalist
    if kind not in PHANTOM_KINDS:
        raise ValueError(f"unknown phantom kind {kind!r}; choose from {PHANTOM_KINDS}")
    if not enabled:
        raise FileNotFoundError(
            f"datalist {datalist} not found. Build one for your data with `xlstm-monai datalist --source "
            f"{dataset_dir} --output {datalist}`, or set generate_phantoms true to use generated phantoms."
        )
    marker = os.path.join(dataset_dir, MARKER)
    if os.path.isdir(dataset_dir) and os.listdir(dataset_dir) and not os.path.isfile(marker):
        raise ValueError(
            f"datalist {datalist} not found and {dataset_dir} already holds files, so no phantoms are written "
            f"there. For your own data build the datalist with `xlstm-monai datalist --source {dataset_dir} "
            f"--output {datalist}`; for phantoms point dataset_dir at an empty or new folder."
        )
    distributed = dist.is_available() and dist.is_initialized()
    if not distributed or dist.get_rank() == 0:
        os.makedirs(dataset_dir, exist_ok=True)
        settings = {"kind": kind, "num_cases": num_cases, "shape": shape, "spacing": spacing, "seed": seed}
        datalist_args = _write(kind, dataset_dir, num_cases, shape, spacing, seed)
        source = datalist_args.pop("source", dataset_dir)
        build_datalist(source, datalist, num_folds=num_folds, seed=seed, base_dir=dataset_dir, **datalist_args)
        with open(marker, "w") as handle:
            json.dump({"generated_by": "xlstm_monai.data.prepare_phantom_dataset", **settings}, handle, indent=2)
    if distributed:
        dist.barrier()
    return datalist
