"""The models' answers on preprocessed 28x28 arrays: no HTTP here, no decoding.

Each ``*_batch`` function takes the payloads of several requests, runs every network involved
once over all of them (the point of batching), and returns one plain result per payload, in
order. The batcher calls them with many payloads, the unbatched path with one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from app.registry import Models
from model.line import Line, Reading, read_lines
from model.preprocess import PreprocessConfig, normalise

Predictions = list[dict[str, Any]]


def _inputs(models: Models, arrays: np.ndarray, config: PreprocessConfig | None = None) -> torch.Tensor:
    """[N, 28, 28] arrays in [0, 1] -> the normalised input tensor, on the models' device
    (normalised as the digit models were, unless ``config`` says otherwise)."""
    return normalise(arrays, config or models.preprocess).to(models.device, non_blocking=True)


def _split(values: list[Any], sizes: list[int]) -> list[list[Any]]:
    out, start = [], 0
    for size in sizes:
        out.append(values[start : start + size])
        start += size
    return out


@torch.inference_mode()
def _digit_probabilities(models: Models, arrays: np.ndarray) -> torch.Tensor:
    """The digit model's ten probabilities for each array, on the CPU."""
    return models.nets.digit(_inputs(models, arrays)).softmax(dim=1).float().cpu()


def _describe(probabilities: torch.Tensor) -> Predictions:
    best, labels = probabilities.max(dim=1)
    return [
        {"label": label, "probability": p, "probabilities": row}
        for label, p, row in zip(labels.tolist(), best.tolist(), probabilities.tolist())
    ]


def classify_batch(models: Models, payloads: list[np.ndarray]) -> list[Predictions]:
    """Per payload, [N, 28, 28] digit arrays -> label, its probability and all ten probabilities."""
    probabilities = _digit_probabilities(models, np.concatenate(payloads))
    return _split(_describe(probabilities), [len(p) for p in payloads])


@torch.inference_mode()
def fashion_batch(models: Models, payloads: list[np.ndarray]) -> list[Predictions]:
    """Per payload, [N, 28, 28] garment arrays -> class name, its index and probability, and
    every class's probability by name."""
    labels = list(models.fashion.metadata["labels"])
    inputs = _inputs(models, np.concatenate(payloads), models.fashion.preprocess)
    probabilities = models.nets.fashion(inputs).softmax(dim=1).float().cpu()
    best, indices = probabilities.max(dim=1)
    described = [
        {"label": labels[index], "index": index, "probability": p, "probabilities": dict(zip(labels, row, strict=True))}
        for index, p, row in zip(indices.tolist(), best.tolist(), probabilities.tolist())
    ]
    return _split(described, [len(p) for p in payloads])


@torch.inference_mode()
def sequence_batch(models: Models, payloads: list[np.ndarray]) -> list[tuple[float, Predictions]]:
    """Per payload, the digit arrays of one sequence in order -> (P(it contains a 4) from the
    CNN-LSTM, each digit as read by the digit model). Sequences of any lengths share the pass:
    the CNN-LSTM packs them."""
    arrays = np.concatenate(payloads)
    lengths = [len(p) for p in payloads]
    inputs = _inputs(models, arrays)
    logits = models.nets.sequence(inputs, torch.tensor(lengths))
    probabilities = torch.sigmoid(logits.float()).cpu().tolist()
    digits = _split(_describe(models.nets.digit(inputs).softmax(dim=1).float().cpu()), lengths)
    return list(zip(probabilities, digits))


def read_strip_batch(models: Models, payloads: list[Line]) -> list[Reading]:
    """Per payload, one strip's line image -> what the line reader reads in it: the lines of
    several requests share one forward pass, padded to the widest."""
    return read_lines(models.nets.line_reader, [line.pixels for line in payloads], models.device, models.line)


@torch.inference_mode()
def add_batch(models: Models, payloads: list[tuple[np.ndarray, int]]) -> list[dict[str, Any]]:
    """Per payload, one digit array and an integer -> the digit read and the sum, from DigitSumNet."""
    arrays = np.stack([array for array, _ in payloads])
    numbers = torch.tensor([number for _, number in payloads], device=models.device)
    logits, totals = models.nets.digit_sum(_inputs(models, arrays), numbers)
    probabilities = logits.softmax(dim=1).float().cpu()
    best, digits = probabilities.max(dim=1)
    sums = torch.round(totals.double()).long().cpu().tolist()
    return [{"digit": d, "probability": p, "sum": s} for d, p, s in zip(digits.tolist(), best.tolist(), sums)]
