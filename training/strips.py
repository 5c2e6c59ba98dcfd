"""Strips of handwritten digits rendered the way users write numbers: one scale for the row,
uneven gaps, touching digits: the plain, black-on-white strips of the acceptance tests. The line
reader trains on them among its rendered strips (``training.render``), and the tests and
``scripts/strip_accuracy.py`` measure strip reading on them, with test digits.
"""

from __future__ import annotations

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
