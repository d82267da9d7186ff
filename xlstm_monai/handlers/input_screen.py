"""
Inference over a folder that one bad study never stops, reading each input once: headers are screened before the
run (a file that is not a volume of the declared channels is listed and left out), and an input whose voxels then
fail to load is skipped and listed as the run goes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence

import monai.data
from ignite.engine import Engine, Events

from xlstm_monai.data.check import screen_headers

__all__ = ["InputScreen", "ScreenedDataset"]

logger = logging.getLogger(__name__)

UNREADABLE = "__unreadable__"  # the key of the item that stands in for an input that failed to load


class ScreenedDataset(monai.data.Dataset):
    """``monai.data.Dataset`` whose item for an input that fails to load or preprocess is ``{UNREADABLE: why}``."""

    def _transform(self, index: int):
        try:
            return super()._transform(index)
        except Exception as error:  # the reader's reason goes into the list of skipped inputs
            from xlstm_monai.data.check import _reason

            return {UNREADABLE: f"{self.data[index]['image']}: cannot be read ({_reason(error)})"}


class InputScreen:
    """
    Inference inputs, screened: before the run from their headers (a file that does not parse, or is not a
    ``spatial_dims``-D volume with ``channels`` channels, is left out with a logged reason), and during it by
    :meth:`skip_unreadable` (an input whose voxels fail to load is skipped). The failures are listed again when the
    run completes. A batch of 500 studies does not die on study 37, and no input is read twice.

    Args:
        files: image paths, or entries with "image" (a DICOM series with a "problem" is listed, not read).
        channels: declared input channels. Defaults to 1.
        spatial_dims: declared spatial dims. Defaults to 3.
    """

    def __init__(self, files: Sequence, channels: int = 1, spatial_dims: int = 3) -> None:
        entries = [f if isinstance(f, Mapping) else {"image": f} for f in files]
        if not entries:
            raise FileNotFoundError("no input images were found (check dataset_dir and input_pattern)")
        listed = [e["problem"] for e in entries if "problem" in e]  # e.g. a 4D DICOM series given to a 3D bundle
        readable = [e for e in entries if "problem" not in e]
        report = screen_headers(readable, channels=channels, spatial_dims=spatial_dims)
        self.failures = listed + report.lines()
        self.entries = [e for e in readable if str(e["image"]) not in report.problems]
        self.unreadable = 0
        for line in self.failures:
            logger.error(f"skipped input: {line}")
        if not self.entries:
            raise ValueError(f"none of the {len(entries)} inputs can be used:\n" + "\n".join(self.failures))

    def skip_unreadable(self, loader: Iterable) -> Iterator:
        """The batches of ``loader`` (batch size 1, a :class:`ScreenedDataset`) without the inputs that failed."""
        return _Skipping(loader, self)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self.report)

    def report(self, engine: Engine) -> None:
        processed = len(self.entries) - self.unreadable
        if self.failures:
            engine.logger.error(
                f"{processed} inputs processed, {len(self.failures)} skipped:\n  " + "\n  ".join(self.failures)
            )
        else:
            engine.logger.info(f"all {processed} inputs processed")


class _Skipping:
    """An unsized iterable over a loader's batches that records and drops the stand-ins of unreadable inputs."""

    def __init__(self, loader: Iterable, screen: InputScreen) -> None:
        self.loader, self.screen = loader, screen

    def __iter__(self) -> Iterator:
        for batch in self.loader:
            if isinstance(batch, Mapping) and UNREADABLE in batch:
                for line in batch[UNREADABLE]:
                    logger.error(f"skipped input: {line}")
                    self.screen.failures.append(line)
                    self.screen.unreadable += 1
                continue
            yield batch
