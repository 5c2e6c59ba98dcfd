"""``/predict/fashion``: one or many garment images -> each one's Fashion-MNIST class."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from app.handlers.digit import DigitHandler, Predictions, split
from model.preprocess import normalise

if TYPE_CHECKING:
    from app.registry import Models


class FashionHandler(DigitHandler):
    """The digit handler's steps, with the garment model's own preprocessing (its checkpoint's)
    and its class names in the answer."""

    name = model = "fashion"
    blank_code = "no_garment_found"

    @torch.inference_mode()
    def predict(self, models: Models, payloads: list[np.ndarray]) -> list[Predictions]:
        """Class name, index and probability, and every class's probability by name."""
        checkpoint = models.checkpoints[self.model]
        labels = list(checkpoint.metadata["labels"])
        inputs = normalise(np.concatenate(payloads), checkpoint.preprocess).to(models.device, non_blocking=True)
        probabilities = models.nets[self.model](inputs).softmax(dim=1).float().cpu()
        best, indices = probabilities.max(dim=1)
        described = [{"label": labels[index], "index": index, "probability": p,
                      "probabilities": dict(zip(labels, row, strict=True))}
                     for index, p, row in zip(indices.tolist(), best.tolist(), probabilities.tolist())]
        return split(described, [len(p) for p in payloads])
