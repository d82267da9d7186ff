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

Options (``--conf NAME VALUE``): ``models``, a comma-separated list of bundle names (default: every
segmentation bundle); ``bundles_dir``, the folder that holds them (default: this repository's bundles/).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from monailabel.interfaces.app import MONAILabelApp
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random
from monailabel.tasks.infer.bundle import BundleInferTask
from monailabel.tasks.train.bundle import BundleTrainTask

logger = logging.getLogger(__name__)

BUNDLES_DIR = Path(__file__).resolve().parents[1] / "bundles"
LABEL_INDICES = {"label_codes": "$list(range(@num_classes))"}


def segmentation_bundles(bundles_dir: Path) -> list[str]:
    """Bundles whose first output is a segmentation: the ones MONAI Label can serve as label models."""
    names = []
    for meta_file in sorted(bundles_dir.glob("*/configs/metadata.json")):
        outputs = json.loads(meta_file.read_text())["network_data_format"]["outputs"]
        if next(iter(outputs.values())).get("format") == "segmentation":
            names.append(meta_file.parents[1].name)
    return names


class LabelInferTask(BundleInferTask):
    """MONAI Label's bundle inference, writing channel indices."""

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


class LabelTrainTask(BundleTrainTask):
    """MONAI Label's bundle training, reading channel indices; a round is a fresh run of max_epochs."""

    def _update_overrides(self, overrides):
        epochs = int(overrides[self.const.key_train_trainer_max_epochs()])
        val_interval = min(int(self.bundle_config["val_interval"]), epochs)
        overrides.update(LABEL_INDICES, resume=False, epochs=epochs, val_interval=val_interval)


class XLSTMMonaiApp(MONAILabelApp):
    """One inference and one training task per bundle; "random" and "first" pick the next study to label."""

    def __init__(self, app_dir, studies, conf):
        bundles_dir = Path(conf.get("bundles_dir", BUNDLES_DIR)).resolve()
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
        return {"random": Random(), "first": First()}
