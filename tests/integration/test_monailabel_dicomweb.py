"""MONAI Label over a PACS: Orthanc with its DICOMweb plugin on the loopback address, holding the real DICOM series of
../shared/data/dicom; the server lists the CT series, segments it with heart_seg_ct, and a saved final label arrives
in the archive as a DICOM SEG that references the series."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pydicom
import pytest

from tests.conftest import shared_data
from tests.integration.monailabel_server import api, monailabel_server, write_small_bundle
from tests.integration.orthanc import Orthanc
from xlstm_monai.presets import SMALL, overrides

pytestmark = [pytest.mark.monailabel, pytest.mark.realdata]

BUNDLE = "heart_seg_ct"
NETWORK = {**overrides(SMALL, feature_size=16), "roi_size": [48, 48, 48], "spacing": [3.0, 3.0, 3.0], "num_workers": 0}


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    """Orthanc with the three real series (brain MR, chest CT, cardiac MR) and a MONAI Label server reading it."""
    dicom = shared_data("dicom")
    root = tmp_path_factory.mktemp("dicomweb")
    orthanc = Orthanc(root / "orthanc").start()
    try:
        files = [f for name in ("brain_t1", "chest_ct", "heart_cine_ed") for f in sorted((dicom / name).glob("*.dcm"))]
        assert orthanc.upload(files) == len(files)
        write_small_bundle(BUNDLE, root / "bundles", NETWORK, {"num_samples": 1})
        env = {"MONAI_LABEL_DICOMWEB_CACHE_PATH": str(root / "cache")}  # the default, a search for CT series, stays
        with monailabel_server(root / "server", orthanc.dicomweb, root / "bundles", BUNDLE, env) as server:
            yield {**server, "orthanc": orthanc, "dicom": dicom}
    finally:
        orthanc.stop()


def _series_uid(folder) -> str:
    return str(pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).SeriesInstanceUID)


def test_the_archive_is_listed_and_offers_its_series(pacs):
    """MONAI Label's default search is for CT series: the archive's one CT series is listed and offered next."""
    stats = json.loads(api(pacs, "/datastore/?output=stats"))
    assert stats["total"] == 1 and stats["completed"] == 0
    offered = json.loads(api(pacs, "/activelearning/first", method="POST", body={}))  # 3D Slicer's Next Sample
    assert offered["id"] == _series_uid(pacs["dicom"] / "chest_ct")


def test_a_series_is_segmented_and_the_label_goes_back_as_a_dicom_seg(pacs, tmp_path):
    series = _series_uid(pacs["dicom"] / "chest_ct")
    result = tmp_path / "pred.nii.gz"
    result.write_bytes(api(pacs, f"/infer/{BUNDLE}?image={series}&output=image", method="POST"))
    prediction = nib.load(result)
    assert prediction.shape == (512, 512, 16)  # the series' own grid

    # the labeller's corrections, saved as the final label: a block of two structures on the series' grid
    corrected = np.zeros(prediction.shape, np.uint8)
    corrected[200:300, 200:300, 4:12] = 1
    corrected[230:270, 230:270, 6:10] = 6
    label = tmp_path / "corrected.nii.gz"
    nib.save(nib.Nifti1Image(corrected, prediction.affine), label)
    info = {"label_info": [{"name": "left_ventricle", "idx": 1}, {"name": "ascending_aorta", "idx": 6}]}
    api(
        pacs,
        f"/datastore/label?image={series}&tag=final",
        method="PUT",
        files={"label": label},
        form={"params": json.dumps(info)},
    )

    segs = [s for s in pacs["orthanc"].series() if s.get("00080060", {}).get("Value") == ["SEG"]]
    assert len(segs) == 1  # found by a DICOMweb (QIDO-RS) query of the archive
    study, seg_series = segs[0]["0020000D"]["Value"][0], segs[0]["0020000E"]["Value"][0]
    metadata = json.loads(
        pacs["orthanc"].get(f"/dicom-web/studies/{study}/series/{seg_series}/metadata", accept="application/dicom+json")
    )
    seg = pydicom.Dataset.from_json(metadata[0])
    assert seg.Modality == "SEG" and seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["left_ventricle", "ascending_aorta"]
    assert json.loads(api(pacs, f"/datastore/label/info?label={series}&tag=final"))  # MONAI Label knows it too
