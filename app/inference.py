"""The models' answers on preprocessed 28x28 arrays: no HTTP here, no decoding.

Every function takes the loaded ``Models`` and numpy arrays from ``model.preprocess`` and returns
plain values; the routes turn them into responses.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from app.registry import Models
from model.preprocess import normalise


def _inputs(models: Models, arrays: np.ndarray) -> torch.Tensor:
    """[N, 28, 28] arrays in [0, 1] -> the normalised input tensor, on the models' device."""
    return normalise(arrays, models.preprocess).to(models.device)


@torch.inference_mode()
def _digit_probabilities(models: Models, arrays: np.ndarray) -> torch.Tensor:
    """The digit model's ten probabilities for each array, on the CPU."""
    return models.digit.model(_inputs(models, arrays)).softmax(dim=1).float().cpu()


def classify(models: Models, arrays: np.ndarray) -> list[dict[str, Any]]:
    """[N, 28, 28] digit arrays -> label, its probability and all ten probabilities, in order."""
    probabilities = _digit_probabilities(models, arrays)
    best, labels = probabilities.max(dim=1)
    return [
        {"label": int(label), "probability": float(p), "probabilities": [float(v) for v in row]}
        for label, p, row in zip(labels, best, probabilities)
    ]


def confidence(models: Models, arrays: np.ndarray) -> np.ndarray:
    """The digit model's top probability for each array: the judge strip segmentation asks
    whether a wide glyph reads better as one digit or as several touching ones."""
    return _digit_probabilities(models, arrays).amax(dim=1).numpy()


@torch.inference_mode()
def contains_four(models: Models, arrays: np.ndarray) -> float:
    """P(the sequence of digit arrays, in order, contains a 4), from the CNN-LSTM."""
    logit = models.sequence.model(_inputs(models, arrays), torch.tensor([len(arrays)]))
    return float(torch.sigmoid(logit.float())[0])


@torch.inference_mode()
def add(models: Models, array: np.ndarray, number: int) -> dict[str, Any]:
    """One digit array and an integer -> the digit read and the sum, both from DigitSumNet."""
    logits, total = models.digit_sum.model(_inputs(models, array[None]), torch.tensor([number], device=models.device))
    probabilities = logits.softmax(dim=1).float().cpu()[0]
    return {"digit": int(probabilities.argmax()), "probability": float(probabilities.max()),
            "sum": int(torch.round(total.double()).item())}
