"""The bundles' model loader: MONAI's ``CheckpointLoader`` with the checks of
:mod:`xlstm_monai.networks.checkpoint_file`."""

from __future__ import annotations

import logging

from monai.handlers import CheckpointLoader

from xlstm_monai.networks.checkpoint_file import load_model_weights

__all__ = ["StrictCheckpointLoader"]

logger = logging.getLogger(__name__)


class StrictCheckpointLoader(CheckpointLoader):
    """
    MONAI's ``CheckpointLoader`` for a bundle's network, through :func:`~xlstm_monai.networks.load_model_weights`:
    the file is checked (hash, weights only, every key) and a problem ends the run with one line naming the file.
    Loads at once when called, as the bundles' ``initialize`` does, so the check comes before the first study.
    """

    def __call__(self, engine=None) -> None:
        load_model_weights(self.load_dict["model"], self.load_path, map_location=self.map_location)
        logger.info(f"loaded {self.load_path}")
