"""Uploaded bytes -> response body, for each endpoint: decode, preprocess, predict, encode.

Decoding and preprocessing run in the thread pool (the ``prepare`` functions handed to the
engine), inference on the engine's inference thread: nothing here blocks the event loop. They
raise ``RequestFailed`` for anything wrong with the input.

The single-image endpoints also take arrays a client preprocessed itself (``Images``: the Open
Inference Protocol's FP32 ``pixels`` input), which skip decoding and go the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from app.deps import Serving
from app.failures import RequestFailed
from app.imaging import MAX_SIDE, decode_image, open_image
from app.registry import Models, model_id
from app.settings import Settings
from model.line import Line, strip_to_line
from model.preprocess import NoInkError, PreprocessConfig, preprocess_digits


@dataclass(frozen=True)
class Upload:
    """One uploaded file: its form field, client-side file name and bytes."""

    field: str
    filename: str
    data: bytes

    @property
    def label(self) -> str:
        return f"{self.field} '{self.filename}'" if self.filename else self.field


# Uploads to decode, or [N, 28, 28] arrays in [0, 1] that a client preprocessed itself.
Images = list[Upload] | np.ndarray


def _open_all(uploads: Images, settings: Settings) -> list[Image.Image]:
    """Each upload opened from its header, nothing decoded yet (on the event loop: cheap);
    preprocessed arrays have nothing to open."""
    if isinstance(uploads, np.ndarray):
        return []
    return [open_image(upload.data, upload.label, settings.max_image_pixels) for upload in uploads]


def _pixels(opened: list[Image.Image]) -> int:
    """The pixels the uploads declare: what the request asks of the pixel budget."""
    return sum(image.width * image.height for image in opened)


def _stop_if_abandoned(serving: Serving) -> None:
    """Between images: a request past its deadline, or whose client has gone away, stops
    decoding; it never reaches the model."""
    if serving.disconnected.is_set():
        raise RequestFailed("client_disconnected", "the client closed the connection before the answer")
    if time.monotonic() > serving.deadline:
        raise RequestFailed("deadline_exceeded", "the request waited longer than the service's deadline; retry shortly")


def _single_arrays(uploads: Images, opened: list[Image.Image], config: PreprocessConfig, blank_code: str,
                   serving: Serving) -> np.ndarray:
    """Uploaded images of one thing each (opened) -> their [N, 28, 28] arrays, preprocessed
    together; ``blank_code`` names the 422 for the first image where nothing stands out from
    the background. Arrays a client preprocessed are already that."""
    if isinstance(uploads, np.ndarray):
        _stop_if_abandoned(serving)
        return uploads
    images = []
    for upload, image in zip(uploads, opened, strict=True):
        _stop_if_abandoned(serving)
        images.append(decode_image(image, upload.label))
    _stop_if_abandoned(serving)
    try:
        return preprocess_digits(images, config)
    except NoInkError as error:
        raise RequestFailed(blank_code, f"{uploads[error.index or 0].label}: {error}") from None


def _strip_line(upload: Upload, opened: Image.Image, models: Models) -> tuple[Line, tuple[int, int]]:
    """The strip's line image, and the size of the image it was made from."""
    image = decode_image(opened, upload.label, MAX_SIDE["strip"])
    try:
        return strip_to_line(image, models.line), image.size
    except NoInkError as error:
        raise RequestFailed("no_digit_found", f"{upload.label}: {error}") from None


async def predict_digits(uploads: Images, serving: Serving, endpoint: str = "/predict/digit") -> dict[str, Any]:
    models, settings, metrics = serving.models, serving.settings, serving.metrics

    opened = _open_all(uploads, settings)

    def prepare() -> tuple[np.ndarray, int]:
        arrays = _single_arrays(uploads, opened, models.preprocess, "no_digit_found", serving)
        metrics.images.labels(endpoint).inc(len(arrays))
        return arrays, len(arrays)

    with serving.pixels.hold(_pixels(opened)):
        predictions = await serving.engine.digit.run(prepare, len(uploads), serving.deadline)
    return {"model": model_id(models.digit), "predictions": predictions}


async def predict_garments(uploads: Images, serving: Serving, endpoint: str = "/predict/fashion") -> dict[str, Any]:
    models, settings, metrics = serving.models, serving.settings, serving.metrics

    opened = _open_all(uploads, settings)

    def prepare() -> tuple[np.ndarray, int]:
        arrays = _single_arrays(uploads, opened, models.fashion.preprocess, "no_garment_found", serving)
        metrics.images.labels(endpoint).inc(len(arrays))
        return arrays, len(arrays)

    with serving.pixels.hold(_pixels(opened)):
        predictions = await serving.engine.fashion.run(prepare, len(uploads), serving.deadline)
    return {"model": model_id(models.fashion), "predictions": predictions}


async def predict_sequence(uploads: Images, strip: Upload | None, serving: Serving,
                           endpoint: str = "/predict/sequence") -> dict[str, Any]:
    """A strip is read whole by the line reader; digit images in order go to the CNN-LSTM, each
    digit read by the digit model."""
    if strip is not None:
        return await _read_strip(strip, serving, endpoint)
    models, settings, metrics = serving.models, serving.settings, serving.metrics

    opened = _open_all(uploads, settings)

    def prepare() -> tuple[np.ndarray, int]:
        if len(uploads) > settings.max_sequence_digits:
            raise RequestFailed("too_many_digits",
                           f"{len(uploads)} digit images sent; the limit is {settings.max_sequence_digits}")
        arrays = _single_arrays(uploads, opened, models.preprocess, "no_digit_found", serving)
        metrics.images.labels(endpoint).inc(len(arrays))
        return arrays, len(arrays)

    with serving.pixels.hold(_pixels(opened)):
        probability, read = await serving.engine.sequence.run(prepare, len(uploads), serving.deadline)
    digits = [{"label": p["label"], "probability": p["probability"]} for p in read]
    return {"model": model_id(models.sequence), "contains_4": probability >= 0.5, "probability": probability,
            "length": len(digits), "digits": digits}


async def _read_strip(strip: Upload, serving: Serving, endpoint: str) -> dict[str, Any]:
    models, settings = serving.models, serving.settings
    opened = _open_all([strip], settings)
    prepared: list[tuple[Line, tuple[int, int]]] = []

    def prepare() -> tuple[Line, int]:
        _stop_if_abandoned(serving)
        line, size = _strip_line(strip, opened[0], models)
        prepared.append((line, size))
        serving.metrics.images.labels(endpoint).inc()
        return line, 1

    with serving.pixels.hold(_pixels(opened)):
        reading = await serving.engine.line_reader.run(prepare, 1, serving.deadline)
    if not reading.labels:
        raise RequestFailed("no_digit_found", f"{strip.label}: no digit found in the strip (only marks that are not digits)")
    if len(reading.labels) > settings.max_sequence_digits:
        raise RequestFailed("too_many_digits",
                       f"{strip.label} holds {len(reading.labels)} digits; the limit is {settings.max_sequence_digits}")
    line, (width, height) = prepared[0]
    digits = [{"label": label, "probability": p,
               "box": [round(min(max(v / side, 0.0), 1.0), 4) for v, side in zip(box, (width, height, width, height))]}
              for label, p, box in zip(reading.labels, reading.probabilities, line.boxes(reading))]
    return {"model": model_id(models.line_reader), "contains_4": reading.contains_4 >= 0.5,
            "probability": reading.contains_4, "length": len(digits), "digits": digits}


def number_range(models: Models, settings: Settings) -> tuple[int, int]:
    """Integers the digit-sum model takes: the setting, within the model's exact range."""
    low, high = models.digit_sum.metadata.get("metrics", {}).get("exact_range", [-settings.max_abs_number, settings.max_abs_number])
    return max(low, -settings.max_abs_number), min(high, settings.max_abs_number)


def check_number(value: int, models: Models, settings: Settings) -> None:
    low, high = number_range(models, settings)
    if not low <= value <= high:
        raise RequestFailed("number_out_of_range", f"number must be between {low} and {high}, got {value}")


async def predict_sum(upload: Upload | np.ndarray, number: int, serving: Serving,
                      endpoint: str = "/predict/digit-sum") -> dict[str, Any]:
    """One digit (an upload, or a [28, 28] array a client preprocessed) and an integer."""
    models, settings = serving.models, serving.settings
    images: Images = upload[None] if isinstance(upload, np.ndarray) else [upload]
    opened = _open_all(images, settings)

    def prepare() -> tuple[tuple[np.ndarray, int], int]:
        array = _single_arrays(images, opened, models.preprocess, "no_digit_found", serving)[0]
        serving.metrics.images.labels(endpoint).inc()
        return (array, number), 1

    with serving.pixels.hold(_pixels(opened)):
        result = await serving.engine.digit_sum.run(prepare, 1, serving.deadline)
    return {"model": model_id(models.digit_sum), "digit": result["digit"], "probability": result["probability"],
            "number": number, "sum": result["sum"]}
