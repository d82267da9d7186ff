"""
DICOM SEG output: each segmentation of a DICOM series goes back to PACS as one DICOM Segmentation object that
references the source series, one segment per structure, written with highdicom.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from ignite.engine import Engine, Events

__all__ = ["DicomSegWriter", "SNOMED_STRUCTURES", "frames_on_source_grid"]

logger = logging.getLogger(__name__)

# channel names (metadata.json's channel_def) -> pydicom's SNOMED CT code names; both hippocampus parts are the
# Hippocampus (SNOMED has no code for its head and body), told apart by their segment labels
SNOMED_STRUCTURES = {
    "left_ventricle": "LeftVentricle",
    "right_ventricle": "RightVentricle",
    "left_atrium": "LeftAtrium",
    "right_atrium": "RightAtrium",
    "myocardium": "LeftVentricleMyocardium",
    "ascending_aorta": "AscendingAorta",
    "pulmonary_artery": "PulmonaryArtery",
    "anterior": "Hippocampus",
    "posterior": "Hippocampus",
}


def _ras(vector) -> np.ndarray:
    """DICOM patient coordinates (LPS) to MONAI's world coordinates (RAS)."""
    return np.asarray(vector, dtype=np.float64) * np.array([-1.0, -1.0, 1.0])


_DATES = ("PatientBirthDate", "StudyDate", "SeriesDate", "ContentDate", "AcquisitionDate")


def _sanitised(datasets: Sequence, name: str) -> list:
    """
    Copies of the source headers a SEG can be built from; the references (UIDs) are unchanged. Two quirks of public
    data are mended, each logged once: unparseable dates ("00000000") are blanked, and slices of one geometrically
    consistent series that each carry their own FrameOfReferenceUID get the first slice's.
    """
    from pydicom.valuerep import DA

    cleaned = [ds.copy() for ds in datasets]
    for keyword in _DATES:
        bad = {str(ds.get(keyword)) for ds in cleaned if ds.get(keyword) and not _valid(DA, ds.get(keyword))}
        if bad:
            logger.warning(f"{name}: {keyword} {sorted(bad)} is not a valid date; left empty in the SEG")
            for ds in cleaned:
                if str(ds.get(keyword, "")) in bad:
                    setattr(ds, keyword, "")
    frames = {str(ds.get("FrameOfReferenceUID", "")) for ds in cleaned}
    if len(frames) > 1:
        logger.warning(f"{name}: its slices carry {len(frames)} FrameOfReferenceUIDs; the SEG uses the first slice's")
        for ds in cleaned:
            ds.FrameOfReferenceUID = cleaned[0].FrameOfReferenceUID
    return cleaned


def _valid(kind, value) -> bool:
    try:
        kind(str(value))
    except ValueError:
        return False
    return True


def frames_on_source_grid(label: np.ndarray, affine: np.ndarray, datasets: Sequence) -> np.ndarray:
    """
    A label volume (X, Y, Z; MONAI's RAS affine) sampled at the pixels of each source slice: (slices, rows,
    columns), in the order of ``datasets``. Each DICOM pixel's centre is placed in the volume through the affine, so
    the result does not depend on how a reader ordered or flipped the axes.
    """
    inverse = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    frames = []
    for ds in datasets:
        rows, cols = int(ds.Rows), int(ds.Columns)
        row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
        orientation = [float(v) for v in ds.ImageOrientationPatient]
        along_row, along_col = _ras(orientation[:3]), _ras(orientation[3:])  # +column index, +row index
        r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        world = (
            _ras(ds.ImagePositionPatient)[:, None]
            + along_row[:, None] * (c.ravel() * col_spacing)
            + along_col[:, None] * (r.ravel() * row_spacing)
        )
        index = np.rint(inverse[:3, :3] @ world + inverse[:3, 3:]).astype(int)  # (3, rows * cols)
        inside = np.all((index >= 0) & (index < np.array(label.shape)[:, None]), axis=0)
        frame = np.zeros(rows * cols, dtype=label.dtype)
        frame[inside] = label[index[0, inside], index[1, inside], index[2, inside]]
        frames.append(frame.reshape(rows, cols))
    return np.stack(frames)


class DicomSegWriter:
    """
    For every input that was a DICOM series, write ``output_dir/<name>_<postfix>.dcm``: a DICOM SEG referencing
    that series, with one segment per structure of ``channel_def`` (SNOMED CT coded where a code exists), from the
    prediction on the input's own grid (after ``Invertd`` and ``AsDiscreted``). Inputs that were not DICOM are left
    to ``SaveImaged``.

    Args:
        output_dir: folder of the SEG files.
        channel_def: metadata.json's ``channel_def``: ``{"0": "background", "1": name, ...}``.
        label_values: the value each channel has in the prediction (channel indices, or MM-WHS codes); default the
            channel indices.
        algorithm: name and version of the bundle, recorded as the segmenting algorithm.
        output_postfix: suffix of the file names. Defaults to "seg".
        dataset_dir: the inputs' folder: a SEG is named as the NIfTI result would be (``output_stem``).
    """

    def __init__(
        self,
        output_dir: str,
        channel_def: Mapping[str, str],
        algorithm: Sequence[str] = ("xlstm-monai", "0"),
        label_values: Sequence[int] | None = None,
        output_postfix: str = "seg",
        dataset_dir: str | None = None,
    ) -> None:
        self.output_dir = output_dir
        self.names = {int(k): v for k, v in channel_def.items() if int(k) > 0}
        self.label_values = list(label_values) if label_values is not None else None
        self.algorithm = tuple(str(a) for a in algorithm)
        self.output_postfix = output_postfix
        self.dataset_dir = dataset_dir
        self.written: list[str] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        for output in outputs:
            pred = output["pred"]
            source = str(pred.meta.get("filename_or_obj", "")) if hasattr(pred, "meta") else ""
            if os.path.isdir(source):
                self.written.append(self.write(pred, source))

    def _segment_numbers(self, label: np.ndarray) -> np.ndarray:
        """Prediction values -> segment numbers (channel indices)."""
        if self.label_values is None:
            return label.astype(np.uint8)
        numbers = np.zeros(label.shape, dtype=np.uint8)
        for channel, value in enumerate(self.label_values):
            numbers[label == value] = channel
        return numbers

    def write(self, pred: torch.Tensor, series_folder: str) -> str:
        import highdicom as hd
        from pydicom.sr.codedict import codes

        from xlstm_monai.data import output_stem
        from xlstm_monai.data.dicom import find_dicom_series

        series = [s for s in find_dicom_series(series_folder) if s.problem is None]
        if len(series) != 1:
            raise ValueError(f"{series_folder} should hold one readable DICOM series, found {len(series)}")
        datasets = _sanitised(series[0].datasets, series[0].name)
        label = self._segment_numbers(np.asarray(torch.as_tensor(pred).detach().cpu())[0])
        frames = frames_on_source_grid(label, np.asarray(pred.affine), datasets)
        family = codes.cid7162.ArtificialIntelligence
        algorithm = hd.AlgorithmIdentificationSequence(name=self.algorithm[0], version=self.algorithm[1], family=family)
        descriptions = [
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=name,
                segmented_property_category=codes.SCT.AnatomicalStructure,
                segmented_property_type=getattr(codes.SCT, SNOMED_STRUCTURES[name])
                if name in SNOMED_STRUCTURES
                else hd.sr.CodedConcept(name, "99XLSTM", name.replace("_", " ")),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
            )
            for number, name in sorted(self.names.items())
        ]
        seg = hd.seg.Segmentation(
            source_images=datasets,
            pixel_array=frames,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=int(datasets[0].get("SeriesNumber", 0) or 0) + 900,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="xlstm-monai",
            manufacturer_model_name=self.algorithm[0],
            software_versions=self.algorithm[1],
            device_serial_number="none",
            series_description=f"{self.algorithm[0]} segmentation",
            omit_empty_frames=False,
        )
        os.makedirs(self.output_dir, exist_ok=True)
        name = output_stem(series_folder, self.dataset_dir or os.path.dirname(os.path.normpath(series_folder)))
        path = os.path.join(self.output_dir, f"{name}_{self.output_postfix}.dcm")
        seg.save_as(path)
        logger.info(f"DICOM SEG of {series[0].name}: {path}")
        return path
