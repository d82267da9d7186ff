from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from xlstm_monai.data import MMWHS_CODES
from xlstm_monai.transforms import MapLabelCodesd


def test_codes_map_to_channels_and_keep_meta():
    label = MetaTensor(
        torch.tensor([[[0, 500, 600], [420, 550, 205], [820, 850, 0]]]), meta={"filename_or_obj": "a.nii"}
    )
    out = MapLabelCodesd("label", MMWHS_CODES)({"label": label})["label"]
    assert out.flatten().tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0]
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "a.nii"


def test_partial_coding_puts_codes_on_chosen_channels():
    label = np.array([[0, 1, 2, 2]])
    out = MapLabelCodesd("label", [0, 1, None, None, None, 2, None, None])({"label": label})["label"]
    assert isinstance(out, np.ndarray) and out.tolist() == [[0, 1, 5, 5]]


def test_unknown_values_name_the_file_and_values():
    label = MetaTensor(torch.tensor([[0, 421, 500, 999]]), meta={"filename_or_obj": "/data/ct_train_1001_label.nii.gz"})
    with pytest.raises(ValueError, match=r"ct_train_1001_label\.nii\.gz: label values 421, 999 are not in"):
        MapLabelCodesd("label", MMWHS_CODES)({"label": label})


def test_duplicate_codes_are_rejected():
    with pytest.raises(ValueError, match="unique"):
        MapLabelCodesd("label", [0, 1, 1])
