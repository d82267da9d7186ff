"""Transforms that MONAI lacks, used by the bundle configs through ``_target_``."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

__all__ = ["MapLabelCodesd", "source_file"]


def source_file(data: Mapping, key: Hashable) -> str:
    """File an item was loaded from, for error messages ("<unknown file>" when it was not loaded from disk)."""
    value = data[key]
    if isinstance(value, MetaTensor):
        name = value.meta.get("filename_or_obj")
    else:
        name = data.get(f"{key}_meta_dict", {}).get("filename_or_obj")
    return str(name) if name else "<unknown file>"


class MapLabelCodesd(MapTransform):
    """
    Map a label coding (e.g. MM-WHS 0, 500, 600, 420, 550, 205, 820, 850) to consecutive channel indices 0..K-1.

    Unlike ``monai.transforms.MapLabelValued``, which passes unknown values through silently, a value outside
    ``codes`` raises a ValueError naming the file and the values, so a mislabelled case stops a run before it
    trains on garbage.

    Args:
        keys: keys of the label images.
        codes: label code of each channel, in channel order (``codes[0]`` is usually background 0); None for a
            channel the dataset does not label (e.g. ``[0, 1, None, None, None, 2, None, None]`` puts a dataset's
            blood pool 1 and myocardium 2 on the MM-WHS LV and myocardium channels).
        allow_missing_keys: don't raise if a key is missing.
    """

    def __init__(
        self, keys: KeysCollection, codes: Sequence[int | None], allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        declared = [int(c) for c in codes if c is not None]
        if len(set(declared)) != len(declared):
            raise ValueError(f"codes should be unique, got {list(codes)}.")
        self.codes = [None if c is None else int(c) for c in codes]

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self._map(d[key], source_file(d, key))
        return d

    def _map(self, label, filename: str):
        values = torch.as_tensor(label) if not isinstance(label, torch.Tensor) else label
        mapped = torch.zeros_like(values, dtype=torch.uint8 if len(self.codes) <= 256 else torch.int32)
        known = torch.zeros_like(values, dtype=torch.bool)
        for index, code in enumerate(self.codes):
            if code is None:
                continue
            hit = values == code
            mapped[hit] = index
            known |= hit
        if not bool(known.all()):
            unknown = torch.unique(values[~known]).tolist()
            shown = ", ".join(f"{v:g}" for v in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            declared = [c for c in self.codes if c is not None]
            raise ValueError(f"{filename}: label values {shown} are not in the declared label set {declared}.")
        if isinstance(label, MetaTensor):
            mapped = MetaTensor(mapped, meta=label.meta, applied_operations=label.applied_operations)
        elif isinstance(label, np.ndarray):
            mapped = mapped.numpy()
        return mapped
