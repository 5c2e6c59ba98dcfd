"""Real test inputs built from MNIST test digits: uploads as users make them.

Shared by the model and (later) the service tests, so every layer is checked on the same kind of
pictures: either polarity, any size, strips with uneven spacing.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from training.strips import Strip, make_strip

__all__ = ["Strip", "digit_image", "encode", "make_strip"]


def digit_image(raw: np.ndarray, *, size: int | None = None, black_on_white: bool = False, pad: int = 0,
                mode: str = "L") -> Image.Image:
    """An MNIST digit (28x28 uint8, white on black) as a PIL image, optionally resized to ``size``
    pixels square, inverted to black ink on white paper, padded, or converted (RGB, RGBA...)."""
    array = 255 - raw if black_on_white else raw
    image = Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8), mode="L")
    if size:
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    if pad:
        canvas = Image.new("L", (image.width + 2 * pad, image.height + 2 * pad), 255 if black_on_white else 0)
        canvas.paste(image, (pad, pad))
        image = canvas
    return image.convert(mode) if mode != "L" else image


def encode(image: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()
