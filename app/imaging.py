"""Uploaded bytes -> a decoded, upright PIL image, or a clear 4xx.

Only the formats the API documents are opened; the pixel count is checked from the header before
any pixel is decoded (a 30,000 x 30,000 PNG compresses to kilobytes); EXIF orientation is applied
and only the first frame of an animation is read.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from app.errors import ApiError

FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")


def decode_image(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Decode one upload; ``name`` (the field and file name) makes error messages findable."""
    if not data:
        raise ApiError(422, "empty_file", f"{name} is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ApiError(413, "image_too_large", f"{name} has too many pixels (decompression bomb)") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise ApiError(415, "unsupported_media_type",
                       f"{name} is not an image in a supported format ({', '.join(FORMATS)})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ApiError(413, "image_too_large", f"{name} is {width}x{height} pixels; the limit is {max_pixels} pixels")
    if width == 0 or height == 0:
        raise ApiError(422, "corrupt_image", f"{name} has no pixels")
    try:
        image.seek(0)
        image.load()
        image = ImageOps.exif_transpose(image) or image
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
        raise ApiError(422, "corrupt_image", f"{name} could not be decoded: {error}") from None
    return image
