"""Uploaded bytes -> a decoded, upright PIL image no larger than the models need, or a clear 4xx.

Only the formats the API documents are opened; the pixel count is read from the header before
any pixel is decoded (a 30,000 x 30,000 PNG compresses to kilobytes), so the request and
in-flight pixel budgets (``app.budget``) are settled before decoding; EXIF orientation is
applied and only the first frame of an animation is read.

Every model works at a few dozen pixels per digit, so a large image is decoded reduced: a JPEG
at 1/2, 1/4 or 1/8 scale by its decoder (``Image.draft``, which never builds the full image),
other formats reduced by box averaging right after loading, one image at a time, so that float
copies made by preprocessing are of the reduced image.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from app.errors import ApiError

FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")
# The longest side an image is decoded at: a digit or a garment needs far less (28 pixels), a
# strip a few thousand columns at most (64 digits a few dozen pixels wide).
MAX_SIDE = {"digit": 1024, "strip": 4096}
# Modes Image.reduce works on; others (palette, 1-bit, CMYK...) are converted first.
_REDUCIBLE = ("L", "LA", "RGB", "RGBA", "I", "F")
# EXIF orientation -> the transpose that makes the image upright (as ImageOps.exif_transpose).
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


def _open(data: bytes, name: str) -> Image.Image:
    if not data:
        raise ApiError(422, "empty_file", f"{name} is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ApiError(413, "image_too_large", f"{name} has too many pixels (decompression bomb)") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise ApiError(415, "unsupported_media_type",
                       f"{name} is not an image in a supported format ({', '.join(FORMATS)})") from None


def _checked_size(image: Image.Image, name: str, max_pixels: int) -> tuple[int, int]:
    width, height = image.size
    if width * height > max_pixels:
        raise ApiError(413, "image_too_large", f"{name} is {width}x{height} pixels; the limit is {max_pixels} pixels")
    if width == 0 or height == 0:
        raise ApiError(422, "corrupt_image", f"{name} has no pixels")
    return width, height


def pixel_count(data: bytes, name: str, max_pixels: int) -> int:
    """The pixels an upload's header declares, read without decoding any (the 4xx of
    ``decode_image`` for an empty file, an unsupported format or a bomb)."""
    width, height = _checked_size(_open(data, name), name, max_pixels)
    return width * height


def decode_image(data: bytes, name: str, max_pixels: int, max_side: int = MAX_SIDE["digit"]) -> Image.Image:
    """Decode one upload, reduced by a whole factor so that its longer side is ``max_side`` pixels at most;
    ``name`` (the field and file name) makes error messages findable."""
    image = _open(data, name)
    width, height = _checked_size(image, name, max_pixels)
    factor = -(-max(width, height) // max_side)  # the smallest whole factor that fits max_side
    try:
        image.seek(0)
        orientation = image.getexif().get(0x0112, 1)
        if factor > 1 and image.format == "JPEG":
            image.draft(image.mode, (width // factor, height // factor))
        image.load()
        factor = -(-max(image.size) // max_side)  # what the decoder did not already reduce
        if factor > 1:
            if image.mode.startswith("I;16"):
                image = image.convert("I")
            elif image.mode not in _REDUCIBLE:
                image = image.convert("RGBA" if "A" in image.mode or "transparency" in image.info else "RGB")
            image = image.reduce(factor)
            if orientation in _UPRIGHT:
                image = image.transpose(_UPRIGHT[orientation])
        else:
            image = ImageOps.exif_transpose(image) or image
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
        raise ApiError(422, "corrupt_image", f"{name} could not be decoded: {error}") from None
    return image
