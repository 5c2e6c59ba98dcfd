"""``/predict/digit``: one or many digit images -> each one's label and ten probabilities.

``DigitHandler`` serves any classifier of 28x28 images whose labels are its class indices: a
new one is a subclass naming its endpoint and checkpoint (``docs/adding-a-model.md``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from app.handlers.base import Handler
from app.handlers.uploads import Images, decode_singles, open_uploads
from app.settings import Settings
from model.preprocess import normalise

if TYPE_CHECKING:
    from app.deps import Serving
    from app.registry import Models

Predictions = list[dict[str, Any]]


def split(values: list[Any], sizes: list[int]) -> list[list[Any]]:
    """A batch's outputs, back into one list per request."""
    out, start = [], 0
    for size in sizes:
        out.append(values[start : start + size])
        start += size
    return out


def describe(probabilities: torch.Tensor) -> Predictions:
    best, labels = probabilities.max(dim=1)
    return [{"label": label, "probability": p, "probabilities": row}
            for label, p, row in zip(labels.tolist(), best.tolist(), probabilities.tolist())]


@torch.inference_mode()
def class_probabilities(models: Models, name: str, arrays: np.ndarray) -> torch.Tensor:
    """Model ``name``'s class probabilities for [N, 28, 28] arrays in [0, 1], on the CPU."""
    inputs = normalise(arrays, models.checkpoints[name].preprocess).to(models.device, non_blocking=True)
    return models.nets[name](inputs).softmax(dim=1).float().cpu()


class DigitHandler(Handler[Images, np.ndarray, Predictions]):
    name = model = "digit"
    decode_in_batch = True
    blank_code = "no_digit_found"  # the failure for an image with nothing on it

    def open(self, inputs: Images, settings: Settings) -> list[Image.Image]:
        return open_uploads(inputs, settings)

    def decode(self, inputs: Images, opened: list[Image.Image], serving: Serving) -> np.ndarray:
        return decode_singles(inputs, opened, serving.models.checkpoints[self.model].preprocess, self.blank_code, serving)

    def count(self, inputs: Images) -> int:
        return len(inputs)

    def size(self, payload: np.ndarray) -> int:
        return len(payload)

    def predict(self, models: Models, payloads: list[np.ndarray]) -> list[Predictions]:
        return split(describe(class_probabilities(models, self.model, np.concatenate(payloads))), [len(p) for p in payloads])

    def encode(self, payload: np.ndarray, output: Predictions, models: Models) -> dict[str, Any]:
        return {"model": models.ids[self.model], "predictions": output}

    def warm_up(self, models: Models) -> None:
        self.predict(models, [np.zeros((2, 28, 28), np.float32)])
