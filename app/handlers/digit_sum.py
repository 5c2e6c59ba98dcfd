"""``/predict/digit-sum``: one digit image and an integer -> the digit and the sum, from
DigitSumNet (one two-input network)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from app.failures import RequestFailed
from app.handlers.base import Handler
from app.handlers.uploads import Images, Upload, decode_singles, open_uploads
from app.settings import Settings
from model.preprocess import normalise

if TYPE_CHECKING:
    from app.deps import Serving
    from app.registry import Models

# One digit (an upload, or a [28, 28] array a client preprocessed) and the integer to add.
SumInputs = tuple[Upload | np.ndarray, int]


def number_range(models: Models, settings: Settings) -> tuple[int, int]:
    """Integers the model takes: the setting, within the model's exact range."""
    default = [-settings.max_abs_number, settings.max_abs_number]
    low, high = models.checkpoints["digit_sum"].metadata.get("metrics", {}).get("exact_range", default)
    return max(low, -settings.max_abs_number), min(high, settings.max_abs_number)


def check_number(value: int, models: Models, settings: Settings) -> None:
    low, high = number_range(models, settings)
    if not low <= value <= high:
        raise RequestFailed("number_out_of_range", f"number must be between {low} and {high}, got {value}")


class DigitSumHandler(Handler[SumInputs, tuple[np.ndarray, int], dict[str, Any]]):
    name = model = "digit_sum"
    decode_in_batch = True

    @staticmethod
    def _images(inputs: SumInputs) -> Images:
        image, _ = inputs
        return image[None] if isinstance(image, np.ndarray) else [image]

    def open(self, inputs: SumInputs, settings: Settings) -> list[Image.Image]:
        return open_uploads(self._images(inputs), settings)

    def decode(self, inputs: SumInputs, opened: list[Image.Image], serving: Serving) -> tuple[np.ndarray, int]:
        array = decode_singles(self._images(inputs), opened, serving.models.checkpoints["digit_sum"].preprocess, "no_digit_found", serving)
        return array[0], inputs[1]

    @torch.inference_mode()
    def predict(self, models: Models, payloads: list[tuple[np.ndarray, int]]) -> list[dict[str, Any]]:
        arrays = np.stack([array for array, _ in payloads])
        numbers = torch.tensor([number for _, number in payloads], device=models.device)
        inputs = normalise(arrays, models.checkpoints["digit_sum"].preprocess).to(models.device, non_blocking=True)
        logits, totals = models.nets["digit_sum"](inputs, numbers)
        probabilities = logits.softmax(dim=1).float().cpu()
        best, digits = probabilities.max(dim=1)
        sums = torch.round(totals.double()).long().cpu().tolist()
        return [{"digit": d, "probability": p, "sum": s} for d, p, s in zip(digits.tolist(), best.tolist(), sums)]

    def encode(self, payload: tuple[np.ndarray, int], output: dict[str, Any], models: Models) -> dict[str, Any]:
        return {"model": models.ids["digit_sum"], "digit": output["digit"], "probability": output["probability"],
                "number": payload[1], "sum": output["sum"]}

    def warm_up(self, models: Models) -> None:
        self.predict(models, [(np.zeros((28, 28), np.float32), 1), (np.zeros((28, 28), np.float32), 2)])
