"""DICOM series in (real series from ../shared/data/dicom), DICOM SEG out, and the series a 3D bundle must refuse."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from tests.conftest import shared_data
from xlstm_monai.data import input_files
from xlstm_monai.data.dicom import find_dicom_series

SERIES = ("brain_t1", "chest_ct", "heart_cine_ed")
pytestmark = pytest.mark.realdata


def _independent_volume(folder):
    """The series read with pydicom alone: (pixels (rows, columns, slices) with rescale, RAS affine of that array)."""
    import pydicom

    datasets = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
    orientation = np.asarray(datasets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    datasets.sort(key=lambda d: float(np.dot(normal, np.asarray(d.ImagePositionPatient, dtype=float))))
    slope, intercept = float(datasets[0].get("RescaleSlope", 1)), float(datasets[0].get("RescaleIntercept", 0))
    pixels = np.stack([d.pixel_array.astype(np.float64) * slope + intercept for d in datasets], axis=-1)
    row_spacing, col_spacing = (float(v) for v in datasets[0].PixelSpacing)
    first, last = (np.asarray(d.ImagePositionPatient, dtype=float) for d in (datasets[0], datasets[-1]))
    step = (last - first) / (len(datasets) - 1)
    lps = np.eye(4)
    lps[:3, 0] = orientation[3:] * row_spacing  # +row index
    lps[:3, 1] = orientation[:3] * col_spacing  # +column index
    lps[:3, 2] = step
    lps[:3, 3] = first
    return pixels, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


@pytest.mark.parametrize("name", SERIES)
def test_monais_reader_places_every_voxel_where_pydicom_does(name):
    """The volume read for a series equals an independent conversion, voxel for voxel, in world coordinates."""
    from monai.transforms import LoadImage

    folder = shared_data("dicom") / name
    image = LoadImage(image_only=True)(str(folder))
    pixels, affine = _independent_volume(folder)
    index = np.indices(pixels.shape).reshape(3, -1)
    world = affine[:3, :3] @ index + affine[:3, 3:]
    theirs = np.linalg.inv(image.affine.numpy())
    mapped = theirs[:3, :3] @ world + theirs[:3, 3:]
    assert np.abs(mapped - np.rint(mapped)).max() < 1e-3  # every voxel centre lands on a voxel centre
    mapped = np.rint(mapped).astype(int)
    assert np.array_equal(np.asarray(image)[mapped[0], mapped[1], mapped[2]], pixels.reshape(-1))
    assert sorted(image.shape) == sorted(pixels.shape)


def test_the_brain_series_matches_its_reference_conversion():
    """dcm2niix's sidecar for the brain T1: orientation, and the 4.8 mm between slices."""
    from monai.transforms import LoadImage

    sidecar = json.loads((shared_data("dicom") / "brain_t1_reference_dcm2niix.json").read_text())
    image = LoadImage(image_only=True)(str(shared_data("dicom") / "brain_t1"))
    (series,) = find_dicom_series(shared_data("dicom") / "brain_t1")
    assert [float(v) for v in series.datasets[0].ImageOrientationPatient] == sidecar["ImageOrientationPatientDICOM"]
    spacing = np.linalg.norm(image.affine.numpy()[:3, :3], axis=0)
    assert sorted(np.round(spacing, 4).tolist()) == sorted([1.0156, 1.0156, sidecar["SpacingBetweenSlices"]])


@pytest.fixture
def folder_of_series(tmp_path):
    """A folder with the three real series (one per subfolder), the CT's files mixed with the brain's in one folder,
    and four bad series: a missing slice, uneven spacing, a cine (two time points), and a non-image object."""
    import pydicom
    from pydicom.uid import generate_uid

    source = shared_data("dicom")
    root = tmp_path / "pacs"
    shutil.copytree(source / "heart_cine_ed", root / "cardiac")
    mixed = _mkdir(root / "mixed")
    for name in ("chest_ct", "brain_t1"):
        for path in (source / name).glob("*.dcm"):
            shutil.copy(path, mixed / f"{name}_{path.name}")

    def variant(name, change, keep=lambda files: files):
        folder = _mkdir(root / name)
        uid = generate_uid()
        for i, path in enumerate(keep(sorted((source / "chest_ct").glob("*.dcm")))):
            ds = pydicom.dcmread(path)
            ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, generate_uid()
            change(ds, i)
            ds.save_as(folder / path.name)

    variant("missing", lambda ds, i: None, keep=lambda files: files[:7] + files[8:])

    def shift_slice_5(ds, i):
        if i == 5:
            ds.ImagePositionPatient = list(ds.ImagePositionPatient[:2]) + [ds.ImagePositionPatient[2] + 1.0]

    variant("uneven", shift_slice_5)

    def two_times(ds, i):
        ds.TriggerTime = 0.0 if i % 2 else 400.0
        if i % 2:
            ds.ImagePositionPatient = list(ds.ImagePositionPatient[:2]) + [ds.ImagePositionPatient[2] - 2.5]

    variant("cine", two_times)
    variant("report", lambda ds, i: setattr(ds, "Modality", "SR"), keep=lambda files: files[:2])
    return root


def _mkdir(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_every_series_is_one_input_and_bad_ones_say_why(folder_of_series):
    entries = input_files(folder_of_series)
    good = [e for e in entries if "problem" not in e]
    problems = sorted(e["problem"] for e in entries if "problem" in e)
    assert len(good) == 3  # cardiac, and the CT and brain series separated out of the mixed folder
    assert [e["image"].endswith("cardiac") for e in good].count(True) == 1
    assert len(problems) == 4
    text = "\n".join(problems)
    assert "misses 1 slice(s): gaps of [5.0] mm where the others are 2.50 mm" in text
    assert "has uneven slice spacing" in text
    assert "is 4D: 16 slices at 8 positions, a cine series (2 time points)" in text
    assert "is not an image series (modality SR)" in text
    assert all(str(folder_of_series) in p for p in problems)  # each line names where the series is


def test_a_dicom_seg_references_its_series_and_holds_the_prediction(tmp_path):
    """SEG read back with highdicom: geometry of the source, and each segment's pixels equal the label volume."""
    import highdicom as hd
    import pydicom
    from monai.data import MetaTensor
    from monai.transforms import LoadImage

    from xlstm_monai.handlers import DicomSegWriter

    folder = shared_data("dicom") / "chest_ct"
    image = LoadImage(image_only=True)(str(folder))
    label = torch.zeros((1, *image.shape), dtype=torch.uint8)
    label[0][image > 100] = 1  # contrast-filled vessels and bone
    label[0][image > 400] = 2
    pred = MetaTensor(label, affine=image.affine, meta=dict(image.meta))
    channels = {"0": "background", "1": "ascending_aorta", "2": "pulmonary_artery"}
    path = DicomSegWriter(str(tmp_path), channels, ("heart_seg_ct", "0.1.0"), dataset_dir=str(folder.parent)).write(
        pred, str(folder)
    )
    assert path.endswith("chest_ct_seg.dcm")
    seg = hd.seg.segread(path)
    (source,) = find_dicom_series(folder)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.uid
    assert [d.SegmentLabel for d in seg.SegmentSequence] == ["ascending_aorta", "pulmonary_artery"]
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "54247002"  # SNOMED CT
    assert seg.Rows == source.datasets[0].Rows and seg.Columns == source.datasets[0].Columns
    # expected masks straight from the source pixels (HU), the way the label volume was made from the image
    for ds in (pydicom.dcmread(p) for p in source.files):
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        masks = seg.get_pixels_by_source_instance(source_sop_instance_uids=[ds.SOPInstanceUID], combine_segments=True)[
            0
        ]
        expected = np.where(hu > 400, 2, np.where(hu > 100, 1, 0))
        assert np.array_equal(masks, expected), ds.InstanceNumber


@pytest.mark.parametrize("output_format", ["both", "dicom_seg"])
def test_a_bundle_segments_a_folder_of_series_end_to_end(folder_of_series, tmp_path, output_format):
    """heart_seg_ct's inference config, as is but a tiny network: good series segmented, bad ones listed."""
    import highdicom as hd
    import nibabel as nib
    from monai.bundle import ConfigParser

    from tests.bundles.helpers import config_path, run_workflow
    from xlstm_monai.release.verify import SMOKE

    root = tmp_path / "bundle"
    overrides = {**SMOKE["heart_seg_ct"]["network"], "bundle_root": str(root), "num_workers": 0}
    parser = ConfigParser()
    parser.read_config(config_path("heart_seg_ct", "inference.yaml"))
    parser.update(overrides)
    (root / "models").mkdir(parents=True)
    torch.save(parser.get_parsed_content("network_def").state_dict(), root / "models" / "model.pt")
    out = tmp_path / "out"
    workflow = run_workflow(
        "heart_seg_ct",
        ["inference.yaml"],
        "inference",
        **overrides,
        dataset_dir=str(folder_of_series),
        output_dir=str(out),
        output_format=output_format,
    )
    screen = workflow.parser.get_parsed_content("input_screen")
    assert len(screen.entries) == 3 and len(screen.failures) == 4
    segs = sorted(p.name for p in out.glob("*_seg.dcm"))
    assert len(segs) == 3 and "cardiac_seg.dcm" in segs
    niftis = sorted(p.name for p in out.glob("*_seg.nii.gz"))
    assert niftis == ([s.replace(".dcm", ".nii.gz") for s in segs] if output_format == "both" else [])
    seg = hd.seg.segread(out / "cardiac_seg.dcm")
    (cardiac,) = find_dicom_series(folder_of_series / "cardiac")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == cardiac.uid
    assert seg.number_of_segments == 7
    if output_format == "both":  # the NIfTI result lies on the series' own grid
        from monai.transforms import LoadImage

        image = LoadImage(image_only=True)(str(folder_of_series / "cardiac"))
        result = nib.load(out / "cardiac_seg.nii.gz")
        assert result.shape == tuple(image.shape) and np.allclose(result.affine, image.affine.numpy(), atol=1e-4)
