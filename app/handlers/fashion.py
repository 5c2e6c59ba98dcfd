"""``/predict/fashion``: one or many garment images -> each one's Fashion-MNIST class."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from app.handlers.base import Handler, model_id
from app.handlers.digit import Predictions, split
from app.imaging import Images, decode_singles, open_uploads
from app.settings import Settings
from model.preprocess import normalise

if TYPE_CHECKING:
    from app.deps import Serving
    from app.registry import Models


class FashionHandler(Handler[Images, np.ndarray, Predictions]):
    name = model = "fashion"
    decode_in_batch = True

    def open(self, inputs: Images, settings: Settings) -> list[Image.Image]:
        return open_uploads(inputs, settings)

    def decode(self, inputs: Images, opened: list[Image.Image], serving: Serving) -> np.ndarray:
        return decode_singles(inputs, opened, serving.models["fashion"].preprocess, "no_garment_found", serving)

    def count(self, inputs: Images) -> int:
        return len(inputs)

    def size(self, payload: np.ndarray) -> int:
        return len(payload)

    @torch.inference_mode()
    def predict(self, models: Models, payloads: list[np.ndarray]) -> list[Predictions]:
        """Class name, index and probability, and every class's probability by name."""
        checkpoint = models["fashion"]
        labels = list(checkpoint.metadata["labels"])
        inputs = normalise(np.concatenate(payloads), checkpoint.preprocess).to(models.device, non_blocking=True)
        probabilities = models.net("fashion")(inputs).softmax(dim=1).float().cpu()
        best, indices = probabilities.max(dim=1)
        described = [{"label": labels[index], "index": index, "probability": p,
                      "probabilities": dict(zip(labels, row, strict=True))}
                     for index, p, row in zip(indices.tolist(), best.tolist(), probabilities.tolist())]
        return split(described, [len(p) for p in payloads])

    def encode(self, payload: np.ndarray, output: Predictions, models: Models) -> dict[str, Any]:
        return {"model": model_id(models, "fashion"), "predictions": output}

    def warm_up(self, models: Models) -> None:
        self.predict(models, [np.zeros((2, 28, 28), np.float32)])
