"""A small labeled MM-WHS phantom set and the overrides that make heart_seg_ct train on it in seconds."""

from __future__ import annotations

import pytest

from xlstm_monai.data import build_datalist
from xlstm_monai.phantoms import write_heart_phantoms
from xlstm_monai.release.verify import SMOKE

# the tiny network and grid of the bundle checks (ci/verify_bundles), with a validation every epoch
TINY_RUN = {
    **SMOKE["heart_seg_ct"]["network"],
    "num_samples": 1,
    "num_workers": 0,
    "cache_rate": 0.0,
    "val_interval": 1,
}


@pytest.fixture
def phantom_set(tmp_path):
    """(dataset_dir, datalist) of 6 CT phantoms at 32^3 in 3 folds."""
    data = tmp_path / "data"
    write_heart_phantoms(str(data), 6, "ct", (32, 32, 32), (4.5, 4.5, 4.5))
    build_datalist(str(data), str(data / "datalist.json"), num_folds=3)
    return data, data / "datalist.json"
