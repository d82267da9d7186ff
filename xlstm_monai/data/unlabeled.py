"""Images of a datalist for self-supervised pretraining, and sampling weights that balance their modalities."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from monai.data import load_decathlon_datalist

from .bundle_datalist import DatalistError, read_datalist_file
from .layouts import _msd_modality, normalize_modality

__all__ = ["load_unlabeled_images", "modality_sampling_weights"]


def load_unlabeled_images(
    datalist: str,
    base_dir: str,
    keys: Sequence[str] = ("training", "validation", "unlabeled", "testing", "test"),
    modality: str | None = None,
) -> list[dict]:
    """
    Every image of the datalist's lists ``keys`` (labels dropped) as ``{"image", "modality"}``: pretraining
    learns from all images, labeled or not. Lists the file does not have are skipped. An entry's modality is its
    own ``modality``, else ``modality``, else the MSD ``dataset.json``'s task modality; an entry with none is an
    error naming it, since normalisation depends on it.
    """
    data = read_datalist_file(datalist)
    present = [k for k in keys if data.get(k)]
    if not present:
        raise DatalistError(f"datalist {datalist} has none of the lists {list(keys)}")
    default = modality
    if default is None and isinstance(data.get("modality"), (dict, str)):  # an MSD dataset.json
        default = _msd_modality(data, datalist)
    images = []
    for key in present:
        for entry in load_decathlon_datalist(datalist, is_segmentation=False, data_list_key=key, base_dir=base_dir):
            tag = entry.get("modality", default)
            if tag is None:
                raise DatalistError(
                    f"datalist {datalist}: entry {entry['image']} in '{key}' has no 'modality' "
                    "(CT or MRI); set one per entry or the config's default_modality"
                )
            images.append({"image": entry["image"], "modality": normalize_modality(tag, str(datalist))})
    return images


def modality_sampling_weights(images: Sequence[Mapping], ratio: Mapping[str, float]) -> list[float]:
    """
    Per-image weights for a weighted random sampler so that, in expectation, a batch holds the modalities in
    ``ratio`` (e.g. ``{"CT": 0.5, "MRI": 0.5}``) whatever their counts in the dataset.
    """
    counts = Counter(str(i["modality"]) for i in images)
    unknown = sorted(set(counts) - set(ratio))
    if unknown:
        raise ValueError(f"modalities {unknown} have no share in the modality ratio {dict(ratio)}")
    total = sum(ratio[m] for m in counts)
    if total <= 0:
        raise ValueError(f"the modality ratio {dict(ratio)} gives no weight to the modalities present {dict(counts)}")
    return [ratio[str(i["modality"])] / total / counts[str(i["modality"])] for i in images]
