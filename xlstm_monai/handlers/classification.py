"""Classification outputs: batched for ignite metrics, and written per image with the class names."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

import torch
from ignite.engine import Engine, Events

__all__ = ["ClassProbabilityWriter", "class_outputs", "class_outputs_onehot"]


def class_outputs(output: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities (N, C), class indices (N,)) from decollated engine outputs: the form ignite's Accuracy and
    Recall take for multiclass problems."""
    probs = torch.stack([torch.as_tensor(o["pred"]).flatten() for o in output])
    labels = torch.stack([torch.as_tensor(o["label"]).flatten()[0] for o in output]).long()
    return probs, labels


def class_outputs_onehot(output: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities (N, C), one-hot labels (N, C)): the form MONAI's ROCAUC takes."""
    probs, labels = class_outputs(output)
    return probs, torch.nn.functional.one_hot(labels, probs.shape[1])


class ClassProbabilityWriter:
    """
    Write ``output_dir/filename``: one row per image with its path, the probability of every class (columns
    named by ``class_names``) and the predicted class. Rows are flushed as they come, so a long run that stops
    keeps what it had predicted (MONAI's ``ClassificationSaver`` writes once, at the end, without class names).

    Args:
        output_dir: folder of the CSV.
        class_names: class names in output-channel order.
        filename: CSV file name. Defaults to "predictions.csv".
        image_key: batch key of the input images (their metadata gives the path). Defaults to "image".
    """

    def __init__(
        self, output_dir: str, class_names: Sequence[str], filename: str = "predictions.csv", image_key: str = "image"
    ) -> None:
        self.path = os.path.join(output_dir, filename)
        self.class_names = list(class_names)
        self.image_key = image_key

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def _start(self, engine: Engine) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path, "w", newline="") as handle:
            csv.writer(handle).writerow(["image", *self.class_names, "predicted"])

    def __call__(self, engine: Engine) -> None:
        with open(self.path, "a", newline="") as handle:
            writer = csv.writer(handle)
            for item, output in zip(engine.state.batch, engine.state.output):
                probs = torch.as_tensor(output["pred"]).flatten().float().tolist()
                image = item[self.image_key]
                name = image.meta.get("filename_or_obj", "") if hasattr(image, "meta") else ""
                writer.writerow(
                    [name, *(f"{p:.6f}" for p in probs), self.class_names[int(torch.tensor(probs).argmax())]]
                )
