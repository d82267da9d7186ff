"""Data: dataset layouts, datalists and the datalist of a bundle run, data checks, label codings."""

from __future__ import annotations

from .bundle_datalist import (
    DatalistError,
    datalist_split,
    default_datalist,
    input_files,
    output_name_formatter,
    output_stem,
    prepare_datalist,
    read_datalist_file,
)
from .check import DataCheckError, DataCheckReport, check_datalist
from .classes import class_weights
from .corpus import (
    MidEpochResume,
    ResumableWeightedSampler,
    SkipUnreadable,
    UnreadableReport,
    find_images,
    pretraining_images,
    read_image_csv,
    training_dataset,
)
from .datalist import build_datalist, fold_split
from .label_codes import HIPPOCAMPUS_LABELS, MMWHS_CODES, MMWHS_LABELS, MMWHS_NAMES
from .unlabeled import load_unlabeled_images, modality_sampling_weights
