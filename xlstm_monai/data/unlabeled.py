"""Images of a datalist for self-supervised pretraining, and sampling weights that balance their modalities."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence

from monai.data import load_decathlon_datalist

__all__ = ["load_unlabeled_images", "modality_sampling_weights"]


def load_unlabeled_images(
    datalist: str, base_dir: str, keys: Sequence[str] = ("training", "unlabeled", "testing")
) -> list[dict]:
    """
    Every image of the datalist's lists ``keys`` (labels dropped) as ``{"image", "modality"}``: pretraining
    learns from all images, labeled or not. Lists the file does not have are skipped; an entry without a
    modality tag is an error naming it, since normalisation depends on it.
    """
    with open(datalist) as handle:
        lists = json.load(handle)
    present = [k for k in keys if k in lists]
    if not present:
        raise ValueError(f"{datalist} has none of the lists {list(keys)}")
    images = []
    for key in present:
        for entry in load_decathlon_datalist(datalist, is_segmentation=True, data_list_key=key, base_dir=base_dir):
            if "modality" not in entry:
                raise ValueError(f"{datalist}: entry {entry['image']} in '{key}' has no 'modality' (CT or MRI)")
            images.append({"image": entry["image"], "modality": entry["modality"]})
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
