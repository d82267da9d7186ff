"""Inference inputs screened before a run over a folder: one bad study is skipped and listed, never fatal."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from ignite.engine import Engine, Events

from xlstm_monai.data.check import check_datalist

__all__ = ["InputScreen"]

logger = logging.getLogger(__name__)


class InputScreen:
    """
    Inference inputs screened before the run: files that do not read, or are not ``spatial_dims``-D volumes,
    are left out with a logged reason, the others are segmented, and the failures are listed again when the run
    completes. A batch of 500 studies does not die on study 37.

    Args:
        files: image paths (or a list of datalist entries with "image").
        channels: declared input channels. Defaults to 1.
        spatial_dims: declared spatial dims. Defaults to 3.
    """

    def __init__(self, files: Sequence, channels: int = 1, spatial_dims: int = 3) -> None:
        entries = [f if isinstance(f, Mapping) else {"image": f} for f in files]
        if not entries:
            raise FileNotFoundError("no input images were found (check dataset_dir and input_pattern)")
        listed = [e["problem"] for e in entries if "problem" in e]  # e.g. a 4D DICOM series given to a 3D bundle
        readable = [e for e in entries if "problem" not in e]
        report = check_datalist(readable, channels=channels, spatial_dims=spatial_dims, raise_error=False, cache=False)
        self.failures = listed + report.lines()
        self.entries = [e for e in readable if str(e["image"]) not in report.problems]
        for line in self.failures:
            logger.error(f"skipped input: {line}")
        if not self.entries:
            raise ValueError(f"none of the {len(entries)} inputs can be used:\n" + "\n".join(self.failures))

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self.report)

    def report(self, engine: Engine) -> None:
        if self.failures:
            engine.logger.error(
                f"{len(self.entries)} inputs processed, {len(self.failures)} skipped:\n  " + "\n  ".join(self.failures)
            )
        else:
            engine.logger.info(f"all {len(self.entries)} inputs processed")
