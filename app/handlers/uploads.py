"""Uploaded bytes -> a decoded, upright PIL image no larger than the models need, or a clear 4xx;
and the steps every handler's uploads share (``Upload``, ``open_uploads``, ``decode_singles``).

Only the formats the API documents are opened; the pixel count is read from the header before
any pixel is decoded (a 30,000 x 30,000 PNG compresses to kilobytes), so the request and
in-flight pixel budgets (``app.engine.PixelBudget``) are settled before decoding; EXIF orientation is
applied and only the first frame of an animation is read.

Every model works at a few dozen pixels per digit, so a large image is decoded reduced: a JPEG
at 1/2, 1/4 or 1/8 scale by its decoder (``Image.draft``, which never builds the full image),
other formats reduced by box averaging right after loading, one image at a time, so that float
copies made by preprocessing are of the reduced image.
"""

from __future__ import annotations

import io
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.failures import RequestFailed
from app.settings import Settings
from model.preprocess import NoInkError, PreprocessConfig, preprocess_digits

if TYPE_CHECKING:
    from app.deps import Serving

FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")
# The longest side an image is decoded at: a digit or a garment needs far less (28 pixels), a
# strip a few thousand columns at most (64 digits a few dozen pixels wide).
MAX_SIDE = {"digit": 1024, "strip": 4096}
# Modes Image.reduce works on; others (palette, 1-bit, CMYK...) are converted first.
_REDUCIBLE = ("L", "LA", "RGB", "RGBA", "I", "F")


def _open(data: bytes, name: str) -> Image.Image:
    if not data:
        raise RequestFailed("empty_file", f"{name} is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise RequestFailed("image_too_large", f"{name} has too many pixels (decompression bomb)") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise RequestFailed("unsupported_media_type",
                       f"{name} is not an image in a supported format ({', '.join(FORMATS)})") from None


def _checked_size(image: Image.Image, name: str, max_pixels: int) -> tuple[int, int]:
    width, height = image.size
    if width * height > max_pixels:
        raise RequestFailed("image_too_large", f"{name} is {width}x{height} pixels; the limit is {max_pixels} pixels")
    if width == 0 or height == 0:
        raise RequestFailed("corrupt_image", f"{name} has no pixels")
    return width, height


def open_image(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Open one upload without decoding a pixel: its format and size, read from the header, are
    checked (415, 413 over ``max_pixels``, 422 empty), and its pixels are what it asks of the
    pixel budget. ``name`` (the field and file name) makes error messages findable."""
    image = _open(data, name)
    _checked_size(image, name, max_pixels)
    return image


def decode_image(image: Image.Image, name: str, max_side: int = MAX_SIDE["digit"]) -> Image.Image:
    """Decode an opened upload, reduced by a whole factor so that its longer side is
    ``max_side`` pixels at most, and made upright by its EXIF orientation."""
    factor = -(-max(image.size) // max_side)  # the smallest whole factor that fits max_side
    try:
        image.seek(0)
        if factor > 1 and image.format == "JPEG":
            image.draft(image.mode, (image.width // factor, image.height // factor))
        image.load()
        factor = -(-max(image.size) // max_side)  # what the decoder did not already reduce
        if factor > 1:  # (the reduced image keeps the original's info, EXIF orientation included)
            if image.mode.startswith("I;16"):
                image = image.convert("I")
            elif image.mode not in _REDUCIBLE:
                image = image.convert("RGBA" if "A" in image.mode or "transparency" in image.info else "RGB")
            image = image.reduce(factor)
        ImageOps.exif_transpose(image, in_place=True)  # (a copy when there is nothing to turn, otherwise)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
        raise RequestFailed("corrupt_image", f"{name} could not be decoded: {error}") from None
    return image


@dataclass(frozen=True)
class Upload:
    """One uploaded file: its form field (or tensor name), client-side file name and bytes."""

    field: str
    filename: str
    data: bytes

    @property
    def label(self) -> str:
        return f"{self.field} '{self.filename}'" if self.filename else self.field


# Uploads to decode, or [N, 28, 28] arrays in [0, 1] that a client preprocessed itself (the Open
# Inference Protocol's FP32 ``pixels``).
Images = list[Upload] | np.ndarray




def open_uploads(uploads: Images, settings: Settings) -> list[Image.Image]:
    if isinstance(uploads, np.ndarray):
        return []
    return [open_image(upload.data, upload.label, settings.max_image_pixels) for upload in uploads]


def stop_if_abandoned(serving: Serving) -> None:
    """Between images: a request past its deadline, or whose client has gone away, stops
    decoding; it never reaches the model."""
    if serving.disconnected.is_set():
        raise RequestFailed("client_disconnected", "the client closed the connection before the answer")
    if time.monotonic() > serving.deadline:
        raise RequestFailed("deadline_exceeded", "the request waited longer than the service's deadline; retry shortly")


def decode_singles(uploads: Images, opened: list[Image.Image], config: PreprocessConfig, blank_code: str,
                   serving: Serving) -> np.ndarray:
    """Images of one thing each -> their [N, 28, 28] arrays, preprocessed together;
    ``blank_code`` names the failure for the first image where nothing stands out from the
    background. Arrays a client preprocessed are already that."""
    if isinstance(uploads, np.ndarray):
        stop_if_abandoned(serving)
        return uploads
    images = []
    for upload, image in zip(uploads, opened, strict=True):
        stop_if_abandoned(serving)
        images.append(decode_image(image, upload.label))
    stop_if_abandoned(serving)
    try:
        return preprocess_digits(images, config)
    except NoInkError as error:
        raise RequestFailed(blank_code, f"{uploads[error.index or 0].label}: {error}") from None
