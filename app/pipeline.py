"""Uploaded bytes -> response body, for each endpoint: decode, preprocess, predict, encode.

These run in a worker thread (``run_in_threadpool``), so decoding, preprocessing and torch never
block the event loop. They raise ``ApiError`` for anything wrong with the input.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from app import inference
from app.errors import ApiError
from app.imaging import decode_image
from app.observability import Metrics
from app.registry import Models, model_id
from app.settings import Settings
from model.preprocess import NoInkError, preprocess_digit, preprocess_strip


@dataclass(frozen=True)
class Upload:
    """One uploaded file: its form field, client-side file name and bytes."""

    field: str
    filename: str
    data: bytes

    @property
    def label(self) -> str:
        return f"{self.field} '{self.filename}'" if self.filename else self.field


T = TypeVar("T")


def _timed(metrics: Metrics, model: str, batch: int, run: Callable[[], T]) -> T:
    """Run one forward pass, recording its duration and batch size."""
    started = time.perf_counter()
    result = run()
    metrics.inference.labels(model).observe(time.perf_counter() - started)
    metrics.batch_size.labels(model).observe(batch)
    return result


def _digit_array(upload: Upload, models: Models, settings: Settings) -> np.ndarray:
    image = decode_image(upload.data, upload.label, settings.max_image_pixels)
    try:
        return preprocess_digit(image, models.preprocess)
    except NoInkError as error:
        raise ApiError(422, "no_digit_found", f"{upload.label}: {error}") from None


def _strip_arrays(upload: Upload, models: Models, settings: Settings) -> np.ndarray:
    image: Image.Image = decode_image(upload.data, upload.label, settings.max_image_pixels)
    try:
        arrays = preprocess_strip(image, lambda candidates: inference.confidence(models, candidates), models.preprocess)
    except NoInkError as error:
        raise ApiError(422, "no_digit_found", f"{upload.label}: {error}") from None
    if len(arrays) > settings.max_sequence_digits:
        raise ApiError(422, "too_many_digits",
                       f"{upload.label} holds {len(arrays)} digits; the limit is {settings.max_sequence_digits}")
    return arrays


def predict_digits(uploads: list[Upload], models: Models, settings: Settings, metrics: Metrics) -> dict[str, Any]:
    arrays = np.stack([_digit_array(upload, models, settings) for upload in uploads])
    metrics.images.labels("/predict/digit").inc(len(arrays))
    predictions = _timed(metrics, "digit", len(arrays), lambda: inference.classify(models, arrays))
    return {"model": model_id(models.digit), "predictions": predictions}


def predict_sequence(uploads: list[Upload], strip: Upload | None, models: Models, settings: Settings,
                     metrics: Metrics) -> dict[str, Any]:
    if strip is not None:
        arrays = _strip_arrays(strip, models, settings)
    else:
        if len(uploads) > settings.max_sequence_digits:
            raise ApiError(422, "too_many_digits",
                           f"{len(uploads)} digit images sent; the limit is {settings.max_sequence_digits}")
        arrays = np.stack([_digit_array(upload, models, settings) for upload in uploads])
    metrics.images.labels("/predict/sequence").inc(len(arrays))
    probability = _timed(metrics, "sequence", len(arrays), lambda: inference.contains_four(models, arrays))
    read = _timed(metrics, "digit", len(arrays), lambda: inference.classify(models, arrays))
    digits = [{"label": p["label"], "probability": p["probability"]} for p in read]
    return {"model": model_id(models.sequence), "contains_4": probability >= 0.5, "probability": probability,
            "length": len(arrays), "digits": digits}


def predict_sum(upload: Upload, number: int, models: Models, settings: Settings, metrics: Metrics) -> dict[str, Any]:
    array = _digit_array(upload, models, settings)
    metrics.images.labels("/predict/digit-sum").inc()
    result = _timed(metrics, "digit_sum", 1, lambda: inference.add(models, array, number))
    return {"model": model_id(models.digit_sum), "digit": result["digit"], "probability": result["probability"],
            "number": number, "sum": result["sum"]}
