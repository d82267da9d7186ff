"""Label codings of the datasets the bundles read.

Kept in one place so phantoms, datalist checks, transforms and bundle metadata agree on them.
"""

from __future__ import annotations

__all__ = ["MMWHS_LABELS", "MMWHS_CODES", "MMWHS_NAMES", "HIPPOCAMPUS_LABELS"]

# MM-WHS challenge label codes (Zhuang et al.), in the channel order the heart bundles predict.
MMWHS_LABELS: dict[str, int] = {
    "background": 0,
    "left_ventricle": 500,
    "right_ventricle": 600,
    "left_atrium": 420,
    "right_atrium": 550,
    "myocardium": 205,
    "ascending_aorta": 820,
    "pulmonary_artery": 850,
}
MMWHS_CODES: list[int] = list(MMWHS_LABELS.values())  # channel index -> MM-WHS code
MMWHS_NAMES: list[str] = list(MMWHS_LABELS.keys())  # channel index -> structure name

# Medical Segmentation Decathlon Task04_Hippocampus.
HIPPOCAMPUS_LABELS: dict[str, int] = {"background": 0, "anterior": 1, "posterior": 2}
