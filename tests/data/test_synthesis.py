"""Brain crops synthesised from the SynthSeg label maps: reproducible per index, centred where asked, resumable."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import shared_data
from xlstm_monai.data.synthesis import HIPPOCAMPUS_LABELS, LabelMapSynthesizer, write_synthetic_images


@pytest.fixture(scope="module")
def label_maps():
    return sorted((shared_data("synthseg_label_maps") / "label_maps").glob("*.nii.gz"))[:2]


def test_an_image_depends_on_its_index_alone(label_maps):
    first, second = LabelMapSynthesizer(label_maps, seed=3), LabelMapSynthesizer(label_maps, seed=3)
    image, labels, affine = first(5)
    first(4)  # another draw in between changes nothing
    again, labels_again, _ = second(5)
    assert np.array_equal(image, again) and np.array_equal(labels, labels_again)
    assert not np.array_equal(image[:20, :20, :20], first(6)[0][:20, :20, :20])
    assert image.shape == labels.shape and all(40 <= s <= 72 for s in image.shape)
    assert np.isfinite(image).all() and 0.0 <= image.min() and image.max() <= 1.5 and image.std() > 0.05
    assert affine.shape == (4, 4)


def test_hippocampus_crops_hold_a_hippocampus_and_random_ones_vary(label_maps):
    around = LabelMapSynthesizer(label_maps, around="hippocampus")
    assert all(np.isin(around(i)[1], HIPPOCAMPUS_LABELS).sum() > 500 for i in range(4))
    anywhere = LabelMapSynthesizer(label_maps, around="random")
    assert sum(np.isin(anywhere(i)[1], HIPPOCAMPUS_LABELS).sum() > 500 for i in range(6)) < 6


def test_t1_contrast_puts_white_matter_above_grey_matter_above_fluid(label_maps):
    image, labels, _ = LabelMapSynthesizer(label_maps, contrast="t1")(0)
    white = image[np.isin(labels, [2, 41])].mean()
    grey = image[np.isin(labels, [3, 42, 17, 53])].mean()
    fluid = image[np.isin(labels, [4, 43, 24])]
    assert white > grey
    if fluid.size > 50:
        assert grey > fluid.mean()


def test_write_resumes_and_records_the_corpus(tmp_path, label_maps):
    written = write_synthetic_images(label_maps[0].parent, tmp_path, 3, per_folder=2, with_labels=True, workers=2)
    assert [p.parent.name for p in written] == ["part000", "part000", "part001"]
    before = written[0].stat().st_mtime_ns
    data = np.asarray(nib.load(written[0]).dataobj)
    assert data.dtype == np.int16 and data.max() > 100
    assert (written[0].parent / "synth_000000_label.nii.gz").is_file()
    write_synthetic_images(label_maps[0].parent, tmp_path, 4, per_folder=2)
    assert written[0].stat().st_mtime_ns == before  # kept, not written again
    assert (tmp_path / "part001" / "synth_000003.nii.gz").is_file() and (tmp_path / "corpus.json").is_file()


def test_bad_settings_and_an_empty_folder_are_errors(tmp_path, label_maps):
    with pytest.raises(ValueError, match="around"):
        LabelMapSynthesizer(label_maps, around="cortex")
    with pytest.raises(ValueError, match="contrast"):
        LabelMapSynthesizer(label_maps, contrast="t2")
    with pytest.raises(FileNotFoundError, match="no NIfTI label maps"):
        write_synthetic_images(tmp_path, tmp_path / "out", 1)


def test_the_command_writes_a_corpus_that_pretraining_reads_as_unlabeled_mri(tmp_path, label_maps, capsys):
    import json

    from xlstm_monai.cli import Commands
    from xlstm_monai.data.layouts import scan_images

    Commands().synthesize(str(tmp_path / "synthetic"), 2, label_dir=str(label_maps[0].parent), around="random")
    assert "wrote 2 images" in capsys.readouterr().out
    assert json.loads((tmp_path / "synthetic" / "corpus.json").read_text())["around"] == "random"
    images = scan_images(tmp_path / "synthetic", "MRI")  # what --extra_unlabeled reads
    assert len(images) == 2 and {i["modality"] for i in images} == {"MRI"}
