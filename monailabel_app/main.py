"""MONAI Label app that serves this repository's segmentation bundles over a folder of studies.

    monailabel start_server --app monailabel_app --studies /data/ct_studies --conf models heart_seg_ct

It is MONAI Label's ``monaibundle`` sample app cut down to local bundles (no model-zoo download, no SAM), plus
the overrides MONAI Label's conventions need, because MONAI Label passes no overrides of its own to a bundle:

* A label's value is its channel index: ``/info`` lists the ``channel_def`` indices of metadata.json and 3D
  Slicer saves corrected labels with them. So ``label_codes`` becomes 0..K-1, and inference writes, and
  training reads, channel indices instead of a dataset's codes (MM-WHS 500, 600, ...).
* Each training round starts from models/model.pt on the current labels (``resume: false``). Resuming the
  bundle's models/last.pt would refuse a round shorter than the previous one. The LR schedule and validation
  interval are fitted to the round's ``max_epochs``, so even a short round can rewrite models/model.pt.
* MONAI 1.6's Spacingd fails on MONAI Label's inference input; ``LabelInferTask.run_pre_transforms`` works
  around it.

A bundle served here declares the top-level ids ``num_classes``, ``label_codes``, ``resume``, ``epochs`` and
``val_interval``, as this repository's segmentation bundles do. Inference needs ``<bundle>/models/model.pt``;
training rewrites it.

It also fixes what MONAI Label 0.8.5 would get wrong for these bundles:

* The best model is the default: MONAI Label sorts a bundle's ``models/*.pt`` by name length and runs the first
  when a request names none (3D Slicer's default), which after a training round is ``last.pt``; here
  ``model.pt`` comes first.
* Studies in a PACS: with ``--studies http://host/dicom-web`` MONAI Label's DICOMweb datastore lists and fetches
  series, and a submitted final label goes back to the archive as a DICOM SEG that references its series, written by
  pydicom-seg (MONAI Label would otherwise download dcmqi's binaries from GitHub at start).
* Active learning: ``<bundle>_epistemic`` scores every unlabeled study by the disagreement of repeated predictions
  with stochastic depth on (MC dropout), and the ``epistemic`` strategy offers the least certain one next.

Options (``--conf NAME VALUE``): ``models``, a comma-separated list of bundle names (default: every
segmentation bundle); ``bundles_dir``, the folder that holds them (default: the installed package's, as
:func:`xlstm_monai.workflow.bundles_dir` finds them);
``epistemic_samples``, predictions per study for the epistemic score (default 5).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from monai.transforms import Activationsd
from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.datastore.utils.convert import binary_to_image, nifti_to_dicom_seg
from monailabel.datastore.utils.dicom import dicom_web_upload_dcm
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import DefaultLabelTag
from monailabel.tasks.activelearning.epistemic import Epistemic
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random
from monailabel.tasks.infer.bundle import BundleInferTask
from monailabel.tasks.scoring.epistemic_v2 import EpistemicScoring
from monailabel.tasks.train.bundle import BundleTrainTask

from xlstm_monai.workflow import bundles_dir as installed_bundles

logger = logging.getLogger(__name__)

LABEL_INDICES = {"label_codes": "$list(range(@num_classes))"}
BEST_MODEL = "model.pt"  # the bundles' best validation checkpoint


def segmentation_bundles(bundles_dir: Path) -> list[str]:
    """Bundles whose first output is a segmentation: the ones MONAI Label can serve as label models."""
    names = []
    for meta_file in sorted(bundles_dir.glob("*/configs/metadata.json")):
        outputs = json.loads(meta_file.read_text())["network_data_format"]["outputs"]
        if next(iter(outputs.values())).get("format") == "segmentation":
            names.append(meta_file.parents[1].name)
    return names


class OneStudyAtATimeEpistemicScoring(EpistemicScoring):
    """
    MONAI Label's epistemic scoring, one study at a time unless the request sets ``max_workers``: its default of two
    threads runs one shared inference task (one network) on two studies at once, which now and then failed the
    whole request (HTTP 500), and gains nothing on a CPU, where torch already uses every core for one study.
    """

    def __call__(self, request, datastore):
        return super().__call__({"max_workers": 1, **request}, datastore)


class LabelInferTask(BundleInferTask):
    """MONAI Label's bundle inference, writing channel indices, with the best model as the default model file."""

    def __init__(self, path, conf, **kwargs):
        super().__init__(path, conf, **kwargs)
        if getattr(self, "valid", False):
            # MONAI Label lists models/*.pt shortest name first, and a request without "model_filename" (3D Slicer's
            # default) runs the first: after a training round that is last.pt, the last epoch's weights. The best
            # checkpoint, model.pt, goes first.
            names = self._config.get("model_filename") or []
            self._config["model_filename"] = sorted(names, key=lambda name: (name != BEST_MODEL, len(name), name))

    def _load_bundle_config(self, path, config):
        parser = super()._load_bundle_config(path, config)
        parser.config.update(LABEL_INDICES)
        return parser

    def run_pre_transforms(self, data, transforms):
        # MONAI >= 1.6 Spacingd updates every "image_*" entry as a metadata dict, and MONAI Label's "image_path"
        # is a string: keep it aside while the bundle's preprocessing runs
        image_path = data.pop("image_path", None)
        data = super().run_pre_transforms(data, transforms)
        if image_path is not None:
            data["image_path"] = image_path
        return data


class UncertaintyInferTask(LabelInferTask):
    """
    The bundle's network with stochastic depth active (train mode), returning class probabilities on the network's
    grid: MONAI Label's epistemic scoring runs it several times per study and scores the disagreement.
    """

    def __init__(self, path, conf):
        super().__init__(path, conf, train_mode=True, skip_writer=True)

    def post_transforms(self, data=None):
        return [Activationsd(keys="pred", softmax=True)]


class LabelTrainTask(BundleTrainTask):
    """MONAI Label's bundle training, reading channel indices; a round is a fresh run of max_epochs."""

    def _update_overrides(self, overrides):
        epochs = int(overrides[self.const.key_train_trainer_max_epochs()])
        val_interval = min(int(self.bundle_config["val_interval"]), epochs)
        overrides.update(LABEL_INDICES, resume=False, epochs=epochs, val_interval=val_interval)


class XLSTMMonaiApp(MONAILabelApp):
    """One inference and one training task per bundle; "random" and "first" pick the next study to label."""

    def __init__(self, app_dir, studies, conf):
        bundles_dir = Path(conf.get("bundles_dir") or installed_bundles()).resolve()
        models = conf.get("models")
        names = [name.strip() for name in models.split(",")] if models else segmentation_bundles(bundles_dir)
        missing = [name for name in names if not (bundles_dir / name / "configs").is_dir()]
        if missing:
            raise ValueError(f"no bundle {', '.join(missing)} in {bundles_dir} (set --conf bundles_dir)")
        self.bundles = {name: str(bundles_dir / name) for name in names}
        logger.info(f"Bundles: {self.bundles}")
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="xlstm-monai bundles",
            description="Segmentation bundles of xlstm-monai (XLSTMUNet)",
        )

    def init_infers(self):
        tasks = {name: LabelInferTask(path, self.conf) for name, path in self.bundles.items()}
        return {name: task for name, task in tasks.items() if task.is_valid()}  # invalid: no models/model.pt yet

    def init_trainers(self):
        tasks = {name: LabelTrainTask(path, self.conf) for name, path in self.bundles.items()}
        return {name: task for name, task in tasks.items() if task.is_valid()}

    def init_strategies(self):
        # "epistemic": the unlabeled study the models are least sure about (run a <bundle>_epistemic scoring first)
        return {"epistemic": Epistemic(), "random": Random(), "first": First()}

    def init_scoring_methods(self):
        methods = {}
        for name, path in self.bundles.items():
            task = UncertaintyInferTask(path, self.conf)
            if task.is_valid():
                samples = int(self.conf.get("epistemic_samples", 5))
                methods[f"{name}_epistemic"] = OneStudyAtATimeEpistemicScoring(task, simulation_size=samples)
        return methods

    def _download_dcmqi_tools(self):
        """Labels go to a DICOMweb archive through pydicom-seg (below), so dcmqi's tools are not fetched."""

    def _init_dicomweb_datastore(self):
        store = super()._init_dicomweb_datastore()
        return DICOMwebSegDatastore(
            client=store._client,
            search_filter=store._search_filter,
            cache_path=os.path.dirname(store._datastore_path) or None,
            fetch_by_frame=store._fetch_by_frame,
            convert_to_nifti=store._convert_to_nifti,
        )


class DICOMwebSegDatastore(DICOMWebDatastore):
    """
    MONAI Label's DICOMweb datastore (a PACS: studies listed and fetched over QIDO/WADO, final labels stored back over
    STOW as DICOM SEG referencing the image series), converting labels with MONAI Label's pydicom-seg path instead
    of dcmqi's itkimage2segimage, a binary it would otherwise download from GitHub when the server starts.
    """

    def save_label(self, image_id, label_filename, label_tag, label_info, label_id=""):
        if label_tag != DefaultLabelTag.FINAL:
            return super().save_label(image_id, label_filename, label_tag, label_info, label_id)
        image_uri = self.get_image_uri(image_id)  # the series is in the cache
        if label_filename.endswith(".bin"):  # 3D Slicer's raw label
            label_filename = binary_to_image(image_uri, label_filename)
        image_dir = os.path.realpath(os.path.join(self._datastore.image_path(), image_id))
        seg_file = nifti_to_dicom_seg(image_dir, label_filename, label_info.get("label_info"), use_itk=False)
        seg_series = dicom_web_upload_dcm(seg_file, self._client)
        os.unlink(seg_file)
        info = self.get_image_info(image_id)
        label_info.update(
            {
                "SeriesInstanceUID": seg_series,
                "Modality": info.get("Modality"),
                "PatientID": info.get("PatientID"),
                "StudyInstanceUID": info.get("StudyInstanceUID"),
            }
        )
        logger.info(f"label of {image_id} stored in the archive as DICOM SEG series {seg_series}")
        return super(DICOMWebDatastore, self).save_label(image_id, label_filename, label_tag, label_info)
