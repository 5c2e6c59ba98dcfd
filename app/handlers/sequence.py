"""``/predict/sequence`` with ``files``: the digit images of a sequence, in order -> P(it
contains a 4) from the CNN-LSTM, and each digit as the digit model reads it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from app.failures import RequestFailed
from app.handlers.base import Handler
from app.handlers.digit import Predictions, describe, split
from app.handlers.uploads import Images, decode_singles, open_uploads
from app.settings import Settings
from model.preprocess import normalise

if TYPE_CHECKING:
    from app.deps import Serving
    from app.registry import Models


class SequenceHandler(Handler[Images, np.ndarray, tuple[float, Predictions]]):
    name = model = "sequence"

    def open(self, inputs: Images, settings: Settings) -> list[Image.Image]:
        return open_uploads(inputs, settings)

    def decode(self, inputs: Images, opened: list[Image.Image], serving: Serving) -> np.ndarray:
        limit = serving.settings.max_sequence_digits
        if len(inputs) > limit:
            raise RequestFailed("too_many_digits", f"{len(inputs)} digit images sent; the limit is {limit}")
        return decode_singles(inputs, opened, serving.models.checkpoints["sequence"].preprocess, "no_digit_found", serving)

    def count(self, inputs: Images) -> int:
        return len(inputs)

    def size(self, payload: np.ndarray) -> int:
        return len(payload)

    @torch.inference_mode()
    def predict(self, models: Models, payloads: list[np.ndarray]) -> list[tuple[float, Predictions]]:
        """Sequences of any lengths share the pass: the CNN-LSTM packs them; the digit model reads
        the same arrays (the digit models share one preprocessing, checked at load)."""
        lengths = [len(p) for p in payloads]
        inputs = normalise(np.concatenate(payloads), models.checkpoints["sequence"].preprocess).to(models.device, non_blocking=True)
        probabilities = torch.sigmoid(models.nets["sequence"](inputs, torch.tensor(lengths)).float()).cpu().tolist()
        digits = split(describe(models.nets["digit"](inputs).softmax(dim=1).float().cpu()), lengths)
        return list(zip(probabilities, digits))

    def encode(self, payload: np.ndarray, output: tuple[float, Predictions], models: Models) -> dict[str, Any]:
        probability, read = output
        digits = [{"label": p["label"], "probability": p["probability"]} for p in read]
        return {"model": models.ids["sequence"], "contains_4": probability >= 0.5, "probability": probability,
                "length": len(digits), "digits": digits}

    def warm_up(self, models: Models) -> None:
        self.predict(models, [np.zeros((2, 28, 28), np.float32)])
