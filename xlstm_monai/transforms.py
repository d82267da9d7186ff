"""Transforms that MONAI lacks, used by the bundle configs through ``_target_``."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable

__all__ = ["MapLabelCodesd", "ModalityNormalized", "MultiViewd", "source_file"]


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

    def __init__(self, keys: KeysCollection, codes: Sequence[int | None], allow_missing_keys: bool = False) -> None:
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


def _plain(image) -> torch.Tensor:
    """A view as a plain tensor: views are stacked and collated, their metadata has no meaning any more."""
    return image.as_tensor() if isinstance(image, MetaTensor) else torch.as_tensor(image)


class ModalityNormalized(MapTransform):
    """
    Intensity normalisation chosen per item by its modality tag (``data["modality"]``, as datalists written by
    ``xlstm-monai datalist`` carry it): CT is windowed from Hounsfield units to [0, 1], MRI is scaled from robust
    intensity percentiles to [0, 1]. One pipeline can then serve a mixed CT + MRI dataset.

    Args:
        keys: image keys.
        ct_window: (a_min, a_max) in HU mapped to [0, 1], clipped. Defaults to (-200, 800).
        mri_percentiles: (lower, upper) percentiles mapped to [0, 1], clipped. Defaults to (0.5, 99.5).
        modality_key: key of the modality tag. Defaults to "modality".
    """

    def __init__(
        self,
        keys: KeysCollection,
        ct_window: Sequence[float] = (-200.0, 800.0),
        mri_percentiles: Sequence[float] = (0.5, 99.5),
        modality_key: str = "modality",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        from monai.transforms import ScaleIntensityRange, ScaleIntensityRangePercentiles

        self.modality_key = modality_key
        self.normalizers = {
            "CT": ScaleIntensityRange(ct_window[0], ct_window[1], 0.0, 1.0, clip=True),
            "MRI": ScaleIntensityRangePercentiles(mri_percentiles[0], mri_percentiles[1], 0.0, 1.0, clip=True),
        }

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        modality = str(d.get(self.modality_key, "")).upper()
        for key in self.key_iterator(d):
            if modality not in self.normalizers:
                raise ValueError(
                    f"{source_file(d, key)}: modality {d.get(self.modality_key)!r} should be one of "
                    f"{sorted(self.normalizers)} (the datalist's '{self.modality_key}' field)."
                )
            d[key] = self.normalizers[modality](d[key])
        return d


class MultiViewd(MapTransform, Randomizable):
    """
    Multi-crop views for self-supervised learning: ``num_global`` draws of ``global_transform`` and
    ``num_local`` draws of ``local_transform`` from one image, each with its own random parameters, stacked
    under ``global_key`` ``(V, C, *global)`` and ``local_key`` ``(W, C, *local)``.

    MONAI's dictionary transforms apply the same random draw to every key, which is not what views need; here
    the view recipes stay readable MONAI array transforms in the config.

    Args:
        keys: the image key (one).
        global_transform: array transform (e.g. a Compose of RandScaleCrop, Resize and augmentations) whose
            output has the same shape at every call.
        local_transform: the same for local views, or None.
        num_global: number of global views. Defaults to 2.
        num_local: number of local views. Defaults to 4.
        global_key, local_key: output keys. Default "global_views", "local_views".
    """

    def __init__(
        self,
        keys: KeysCollection,
        global_transform: Callable,
        local_transform: Callable | None = None,
        num_global: int = 2,
        num_local: int = 4,
        global_key: str = "global_views",
        local_key: str = "local_views",
    ) -> None:
        super().__init__(keys)
        if num_global < 1 or num_local < 0 or (num_local and local_transform is None):
            raise ValueError("MultiViewd needs num_global >= 1 and a local_transform when num_local > 0.")
        self.global_transform, self.local_transform = global_transform, local_transform
        self.num_global, self.num_local = num_global, num_local
        self.global_key, self.local_key = global_key, local_key

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> MultiViewd:
        super().set_random_state(seed, state)
        for transform in (self.global_transform, self.local_transform):
            if isinstance(transform, Randomizable):
                transform.set_random_state(seed=int(self.R.randint(0, 2**31 - 1)))
        return self

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d.pop(key)
            d[self.global_key] = torch.stack([_plain(self.global_transform(image)) for _ in range(self.num_global)])
            if self.num_local:
                d[self.local_key] = torch.stack([_plain(self.local_transform(image)) for _ in range(self.num_local)])
        return d
