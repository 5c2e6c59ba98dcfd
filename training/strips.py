"""MNIST digits as users upload them: one digit as an image of any size and polarity
(``digit_image``, ``encode``), and strips rendered the way users write numbers: one scale for
the row, uneven gaps, touching digits: the plain, black-on-white strips of the acceptance tests.
The line reader trains on these strips among its rendered ones (``training.render``); the tests,
the benchmark and ``scripts.strip_accuracy`` make their uploads here, from test digits.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Strip:
    image: Image.Image
    labels: list[int]
    columns: list[tuple[int, int]]  # each digit's first and last ink column in the image


def make_strip(digits: np.ndarray, labels: np.ndarray, rng: np.random.Generator, *, height: int | None = None,
               max_gap: float = 1 / 3, black_on_white: bool = True) -> Strip:
    """A row of MNIST digits as one image, the way a user would photograph a written number.

    Every digit is scaled by the same factor (the 28-pixel MNIST cell becomes ``height`` pixels,
    drawn from 40..140 when not given), cropped to its ink, and placed after the previous one with
    a gap drawn uniformly from 0 to ``max_gap`` of its own width: uneven spacing, touching
    bounding boxes included.
    """
    height = height or int(rng.integers(40, 141))
    scale = height / 28
    crops = []
    for raw in digits:
        rows = np.flatnonzero(raw.max(axis=1) > 0)
        cols = np.flatnonzero(raw.max(axis=0) > 0)
        crop = Image.fromarray(raw[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
        size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
        crops.append((crop.resize(size, Image.Resampling.BICUBIC), round(rows[0] * scale)))
    margin = height // 5
    gaps = [round(rng.uniform(0, max_gap) * c.width) for c, _ in crops]
    width = 2 * margin + sum(c.width for c, _ in crops) + sum(gaps[1:])
    canvas = np.zeros((height + 2 * margin, width), dtype=np.uint8)
    x = margin
    columns = []
    for i, (crop, top) in enumerate(crops):
        if i:
            x += gaps[i]
        region = canvas[margin + top : margin + top + crop.height, x : x + crop.width]
        np.maximum(region, np.asarray(crop)[: region.shape[0]], out=region)
        columns.append((x, x + crop.width - 1))
        x += crop.width
    array = 255 - canvas if black_on_white else canvas
    return Strip(Image.fromarray(array), [int(v) for v in labels], columns)


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
