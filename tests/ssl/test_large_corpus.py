"""pretrain_ssl on a corpus larger than memory: image discovery, the disk cache, sharding and mid-epoch resume."""

from __future__ import annotations

import gzip
import os

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Events
from ignite.handlers import Checkpoint
from monai.data import DataLoader, Dataset
from monai.engines import Workflow
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, RandSpatialCropd

from xlstm_monai.data import (
    ResumableWeightedSampler,
    UnreadableReport,
    find_images,
    pretraining_images,
    training_dataset,
)
from xlstm_monai.data import corpus as corpus_module
from xlstm_monai.handlers import CheckpointSaver


def _volume(path, size=16, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = np.random.default_rng(seed).random((size,) * 3).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return str(path)


def _truncated(path, size=24):
    """A .nii.gz whose header reads but whose voxels are cut short."""
    full = str(path) + ".full.nii.gz"
    _volume(full, size)
    with gzip.open(full, "rb") as handle:
        raw = handle.read()
    os.remove(full)
    with gzip.open(str(path), "wb") as handle:
        handle.write(raw[: len(raw) // 3])
    return str(path)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "corpus"
    good = [
        _volume(root / "site_a" / "p1" / "scan.nii.gz", seed=1),
        _volume(root / "site_a" / "p2" / "scan.nii", seed=2),
        _volume(root / "site_b" / "deep" / "er" / "vol.nii.gz", seed=3),
    ]
    _volume(root / "derived" / "mask.nii.gz", seed=4)  # excluded by a glob
    (root / "site_b" / "notes.txt").write_text("not an image")
    (root / "site_b" / "fake.nii.gz").write_text("a text file named like an image")
    truncated = _truncated(root / "site_b" / "cut.nii.gz")
    return root, sorted(good), truncated


def test_a_folder_tree_is_searched_with_globs_and_bad_files_are_listed(tree, tmp_path):
    root, good, truncated = tree
    report = tmp_path / "eval" / "unreadable.txt"
    images = pretraining_images(
        str(root), str(tmp_path / "none.json"), str(tmp_path / "bundle"), modality="CT",
        exclude=["derived/**"], report_file=str(report),
    )  # fmt: skip
    found = sorted(e["image"] for e in images)
    # the truncated file's header reads: it is listed here and skipped when the dataset loads it
    assert found == sorted(good + [truncated])
    assert {e["modality"] for e in images} == {"CT"}
    listed = UnreadableReport(str(report)).read()
    assert list(listed) == [str(root / "site_b" / "fake.nii.gz")]


def test_the_images_left_out_are_listed_at_the_end_of_the_run(tmp_path, caplog):
    from ignite.engine import Engine

    report = tmp_path / "unreadable.txt"
    report.write_text("/data/a.nii.gz\tcannot be read\n/data/b.nii.gz\tfails to load\n/data/a.nii.gz\tagain\n")
    engine = Engine(lambda e, b: None)
    UnreadableReport(str(report)).attach(engine)
    with caplog.at_level("WARNING"):
        engine.run([0])
    assert "2 image(s) were left out or skipped" in caplog.text
    assert "/data/a.nii.gz: cannot be read" in caplog.text and "/data/b.nii.gz: fails to load" in caplog.text


def test_a_pipeline_that_fails_on_every_image_is_an_error(tree, tmp_path):
    root, good, _ = tree
    dataset = training_dataset([{"image": p} for p in good], lambda item: 1 / 0, "disk", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="in a row failed to load"):
        dataset[0]


def test_a_csv_of_paths_gives_images_and_modalities(tree, tmp_path):
    root, good, _ = tree
    table = tmp_path / "images.csv"
    rows = [f"{p},{m}" for p, m in zip(good, ["CT", "MR", "T1w"])]
    table.write_text("image,modality\n" + "\n".join(rows) + "\n")
    images = pretraining_images(str(table), "unused.json", str(tmp_path / "bundle"))  # dataset_dir: the CSV
    assert [e["image"] for e in images] == good
    assert [e["modality"] for e in images] == ["CT", "MRI", "MRI"]
    rows = [f"{os.path.relpath(p, root)},CT" for p in good]
    table.write_text("image,modality\n" + "\n".join(rows) + "\n")
    images = pretraining_images(str(root), str(table), str(tmp_path / "bundle"))  # datalist: the CSV
    assert [e["image"] for e in images] == good  # relative to dataset_dir
    table.write_text("image\n" + "\n".join(os.path.relpath(p, root) for p in good) + "\n")
    with pytest.raises(ValueError, match="no modality"):
        pretraining_images(str(root), str(table), str(tmp_path / "bundle"))
    assert pretraining_images(str(root), str(table), str(tmp_path / "bundle"), modality="MRI")[0]["modality"] == "MRI"


def test_the_image_list_is_cached_until_the_folder_changes(tree, tmp_path, monkeypatch):
    root, good, _ = tree
    scans = []
    scan = corpus_module._scan
    monkeypatch.setattr(corpus_module, "_scan", lambda *a, **k: scans.append(1) or scan(*a, **k))
    bundle = str(tmp_path / "bundle")
    first = find_images(root, bundle, exclude=["derived/**"])
    second = find_images(root, bundle, exclude=["derived/**"])
    assert first == second and len(scans) == 1
    cached = list((tmp_path / "bundle" / "data" / "datalists").glob("*_images.json"))
    assert len(cached) == 1
    find_images(root, bundle)  # other globs: a list of their own
    assert len(scans) == 2
    _volume(root / "site_c" / "new.nii.gz", seed=9)
    third = find_images(root, bundle, exclude=["derived/**"])
    assert len(scans) == 3 and len(third) == len(first) + 1


def test_two_ranks_draw_from_disjoint_shards_that_cover_the_list():
    items = [{"image": f"{i}.nii.gz", "modality": "CT" if i < 7 else "MRI"} for i in range(10)]
    weights = [1.0] * 10
    shards, drawn = [], []
    for rank in range(2):
        sampler = ResumableWeightedSampler(items, weights, seed=3, num_replicas=2, rank=rank)
        sampler.set_epoch(1)
        shards.append(set(torch.utils.data.DistributedSampler.__iter__(sampler)))
        drawn.append(list(sampler))
        assert len(drawn[-1]) == len(sampler) == 5
        assert set(drawn[-1]) <= shards[-1]
        assert list(sampler) == drawn[-1]  # the same epoch draws the same indices
    assert not shards[0] & shards[1] and shards[0] | shards[1] == set(range(10))
    assert not set(drawn[0]) & set(drawn[1])


def test_the_disk_cache_keeps_the_preprocessing_on_disk_and_skips_bad_files(tree, tmp_path):
    root, good, truncated = tree
    data = [{"image": p} for p in good + [truncated]]
    transform = Compose(
        [LoadImaged("image"), EnsureChannelFirstd("image"), RandSpatialCropd("image", (8, 8, 8), random_size=False)]
    )
    cache_dir = tmp_path / "cache"
    report = tmp_path / "unreadable.txt"
    dataset = training_dataset(data, transform, "disk", str(cache_dir), report_file=str(report))
    assert not hasattr(dataset.dataset, "_cache")  # nothing held in memory
    first = [dataset[i]["image"].shape for i in range(len(dataset))]
    assert all(tuple(s) == (1, 8, 8, 8) for s in first)  # the bad item was replaced by a readable one
    assert len(list(cache_dir.glob("*.pt"))) == len(good)
    assert list(UnreadableReport(str(report)).read()) == [truncated]
    for path in good:  # the second pass reads the cache, not the files
        os.rename(path, path + ".moved")
    assert all(dataset[i]["image"].shape == (1, 8, 8, 8) for i in range(len(good)))
    assert len(UnreadableReport(str(report)).read()) == 1
    with pytest.raises(ValueError, match="memory' or 'disk"):
        training_dataset(data, transform, "ram")


def _indices_run(ckpt_dir, max_epochs, record, stop_at=None, resume=False):
    """A workflow over a dataset of indices (batches of 2, 4 per epoch) that records its batches."""
    items = list(range(8))
    sampler = ResumableWeightedSampler(items, [1.0] * 8, seed=5)
    loader = DataLoader(Dataset(items), batch_size=2, sampler=sampler, num_workers=0)
    engine = Workflow(
        device=torch.device("cpu"),
        max_epochs=max_epochs,
        data_loader=loader,
        iteration_update=lambda e, batch: record.append((e.state.iteration, batch.tolist())),
    )
    sampler.attach(engine)
    saver = CheckpointSaver(str(ckpt_dir), {"trainer": engine}, save_interval=1, save_interval_steps=1)
    saver.attach(engine)
    if stop_at is not None:
        engine.add_event_handler(Events.ITERATION_COMPLETED(once=stop_at), lambda e: e.terminate())
    if resume:
        checkpoint = torch.load(os.path.join(ckpt_dir, "last.pt"), weights_only=False)
        Checkpoint.load_objects({"trainer": engine}, checkpoint)
    engine.run()
    return engine


def test_a_run_killed_mid_epoch_resumes_at_its_step_with_the_same_batches(tmp_path):
    whole: list = []
    _indices_run(tmp_path / "whole", 3, whole)
    parts: list = []
    _indices_run(tmp_path / "parts", 3, parts, stop_at=6)  # 2 of the 4 batches of epoch 2 done
    assert parts == whole[:6]
    checkpoint = torch.load(tmp_path / "parts" / "last.pt", weights_only=False)
    assert checkpoint["iteration"] == 6  # one object saved: its state alone
    resumed: list = []
    engine = _indices_run(tmp_path / "parts", 3, resumed, resume=True)
    assert resumed[0][0] == 7
    assert resumed == whole[6:]
    assert engine.state.iteration == 12


def _pretrain(root, dataset_dir, stop_at=None, starts=None, **settings):
    from monai.bundle import ConfigWorkflow

    from tests.bundles.helpers import config_path
    from tests.ssl.test_pretrain_ssl import FAST

    workflow = ConfigWorkflow(
        config_file=config_path("pretrain_ssl", "train.yaml"),
        meta_file=config_path("pretrain_ssl", "metadata.json"),
        logging_file=config_path("pretrain_ssl", "logging.conf"),
        workflow_type="train",
        bundle_root=str(root),
        dataset_dir=str(dataset_dir),
        **{**FAST, **settings},
    )
    workflow.initialize()
    assert not workflow.check_properties()
    trainer = workflow.parser.get_parsed_content("train#trainer")
    if starts is not None:
        trainer.add_event_handler(Events.STARTED, lambda e: starts.append(e.state.iteration))
    if stop_at is not None:
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=stop_at), lambda e: e.terminate())
    workflow.run()
    workflow.finalize()
    return trainer


def test_pretraining_on_a_csv_with_the_disk_cache_resumes_mid_epoch(tmp_path):
    from xlstm_monai.phantoms import write_heart_phantoms

    data = tmp_path / "data"
    write_heart_phantoms(str(data / "ct"), 2, "ct", (32, 32, 32), (4.5, 4.5, 4.5), seed=1, with_labels=False)
    write_heart_phantoms(str(data / "mr"), 2, "mr", (32, 32, 32), (4.5, 4.5, 4.5), seed=2, with_labels=False)
    rows = [f"{p.relative_to(data)},{p.parent.name}" for p in sorted(data.rglob("*.nii.gz"))]
    assert len(rows) == 4
    (data / "images.csv").write_text("image,modality\n" + "\n".join(rows) + "\n")
    root = tmp_path / "bundle"
    settings = {"epochs": 1, "dataset_cache": "disk", "checkpoint_interval_steps": 1}
    starts: list = []
    first = _pretrain(root, data / "images.csv", stop_at=1, starts=starts, **settings)
    assert first.state.iteration == 1
    assert torch.load(root / "models" / "last.pt", weights_only=False)["trainer"]["iteration"] == 1
    assert list((root / "cache").glob("*.pt"))  # preprocessed images kept on disk
    second = _pretrain(root, data / "images.csv", starts=starts, **settings)
    assert starts == [0, 1]  # the second run starts at the step the first stopped after
    assert second.state.iteration == 2 == second.state.epoch_length


@pytest.mark.realdata
def test_dicom_series_in_a_tree_are_volumes_with_their_modality(tmp_path):
    import shutil

    from tests.conftest import shared_data

    source = shared_data("dicom")
    root = tmp_path / "archive"
    shutil.copytree(source / "brain_t1", root / "patient1" / "t1")
    shutil.copytree(source / "chest_ct", root / "patient2" / "ct")
    shutil.copytree(source / "chest_ct", root / "old" / "ct")  # excluded
    nifti = _volume(root / "patient3" / "scan.nii.gz")
    images = pretraining_images(
        str(root), str(tmp_path / "none.json"), str(tmp_path / "bundle"), modality="MRI", exclude=["old/**"]
    )
    by_path = {e["image"]: e["modality"] for e in images}
    assert by_path == {str(root / "patient1" / "t1"): "MRI", str(root / "patient2" / "ct"): "CT", nifti: "MRI"}


def test_an_image_from_the_disk_cache_and_one_read_cold_collate_in_one_batch(tmp_path):
    """Sampling with replacement puts an image read from the cache beside one read for the first time: both carry
    the same keys and types, so the batch collates."""
    from monai.bundle import ConfigWorkflow
    from monai.data import list_data_collate

    from tests.bundles.helpers import config_path
    from xlstm_monai.phantoms import write_heart_phantoms

    data = tmp_path / "data"
    write_heart_phantoms(str(data / "ct"), 2, "ct", (32, 32, 32), (4.5, 4.5, 4.5), seed=1, with_labels=False)
    workflow = ConfigWorkflow(
        config_file=config_path("pretrain_ssl", "train.yaml"),
        workflow_type="train",
        bundle_root=str(tmp_path / "bundle"),
        dataset_dir=str(data / "ct"),
        default_modality="CT",
        dataset_cache="disk",
        global_size=[16, 16, 16],
        local_size=[8, 8, 8],
    )
    dataset = workflow.parser.get_parsed_content("train#dataset")
    cold = dataset[0]
    warm = dataset[0]  # now read from the cache
    assert {k: type(v) for k, v in cold.items()} == {k: type(v) for k, v in warm.items()}
    batch = list_data_collate([dataset[1], warm])  # item 1 is read cold
    assert batch["global_views"].shape[:2] == (2, 2)
