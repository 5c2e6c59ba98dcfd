"""The one image preprocessing shared by training and serving.

MNIST digits are white ink on black, size-normalised so the ink's bounding box fits a 20x20 box
(aspect ratio kept) and then centred by centre of mass in a 28x28 canvas. Users send anything:
black ink on white paper, photos, 4000-pixel scans, strips of several digits. Every image, the
MNIST training images included, goes through the same steps below, so the networks only ever
see what serving will give them:

1. ``to_gray``: any PIL image -> float grayscale in [0, 1] (alpha flattened onto white).
2. ``to_ink``: detect the polarity from the border, remove the background level -> "ink" in
   [0, 1], MNIST polarity (ink high, background 0).
3. ``ink_to_array`` and ``normalise``: crop to the ink, resize keeping the aspect ratio, centre
   by mass, normalise.

A strip of several digits is not cut apart: ``model.line`` turns it into one line image for the
line reader, with steps 1 and 2 above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image


class NoInkError(ValueError):
    """The image holds no ink that could be a digit (blank, uniform, or pure noise). ``index``:
    which image of a batch (``preprocess_digits``)."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


BLANK = "the image is blank: no ink stands out from the background"


@dataclass(frozen=True)
class PreprocessConfig:
    """Parameters of the MNIST-style normalisation; stored in every checkpoint."""

    canvas: int = 28
    box: int = 20
    mean: float = 0.1307
    std: float = 0.3081
    # Ink below this share of the image's ink range is background (paper texture, JPEG noise).
    noise_floor: float = 0.12
    # Contrast (ink range) below which an image is taken to be blank.
    min_contrast: float = 0.08
    # Where the resized crop goes on the canvas: its centre of mass at the centre ("mass", how
    # MNIST was made) or its bounding box centred ("box", how Fashion-MNIST was made).
    centre: str = "mass"

    def __post_init__(self) -> None:
        if self.centre not in ("mass", "box"):
            raise ValueError(f"centre must be 'mass' or 'box', not {self.centre!r}")

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, float | int]) -> PreprocessConfig:
        return cls(**data)


DEFAULT_CONFIG = PreprocessConfig()
# Fashion-MNIST's own recipe: the object's longer side fills the 28-pixel canvas, centred by its
# box; a low noise floor keeps the faint texture of light garments. Mean and std are the data
# set's.
FASHION_CONFIG = PreprocessConfig(box=28, mean=0.2860, std=0.3530, noise_floor=0.03, centre="box")


def to_gray(image: Image.Image) -> np.ndarray:
    """Any decoded PIL image -> 2-D float32 grayscale in [0, 1].

    Transparency is flattened onto paper of the colour opposite to the visible ink (white under
    dark ink, black under light ink), and 16-bit or 32-bit images are scaled by their range
    instead of being clipped to 8 bits.
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        if image.mode == "F":
            top = max(float(array.max()), 1.0) if array.max() > 1.0 else 1.0
        return np.clip(array / top, 0.0, 1.0).astype(np.float32)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        image = image.convert("RGBA")
        rgba = np.asarray(image, dtype=np.float32) / 255.0
        alpha = rgba[..., 3]
        if alpha.min() < 1.0:
            # Transparent areas become paper: white under dark ink (the usual case), black under
            # light ink (white strokes exported on a transparent background), so ink stays ink.
            luminance = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            ink_level = float((luminance * alpha).sum() / max(float(alpha.sum()), 1e-6))
            paper = 0.0 if ink_level > 0.5 else 1.0
            return np.clip(luminance * alpha + paper * (1.0 - alpha), 0.0, 1.0).astype(np.float32)
        image = image.convert("RGB")
    if image.mode == "CMYK":
        image = image.convert("RGB")
    gray = image if image.mode == "L" else image.convert("L")
    return np.asarray(gray, dtype=np.float32) / 255.0


def _border(arrays: np.ndarray) -> np.ndarray:
    """[N, H, W] -> [N, border pixels]: each image's outer frame, 1/20 of its shorter side wide."""
    width = max(1, min(arrays.shape[1:]) // 20)
    frame = (arrays[:, :width], arrays[:, -width:], arrays[:, :, :width], arrays[:, :, -width:])
    return np.concatenate([part.reshape(len(arrays), -1) for part in frame], axis=1)


def to_inks(grays: np.ndarray, config: PreprocessConfig = DEFAULT_CONFIG) -> tuple[np.ndarray, np.ndarray]:
    """[N, H, W] grayscale in [0, 1] -> ([N, H, W] ink maps, [N] bool: blank): ``to_ink`` for
    many images of one size at once, in a few array operations instead of a few per image (a
    256-image request, a 60,000-image training split). A blank image's ink map is all zeros."""
    grays = np.asarray(grays, dtype=np.float32)
    background = np.median(_border(grays), axis=1).astype(np.float64)
    inverted = background > 0.5
    ink = np.where(inverted[:, None, None], 1.0 - grays, grays)
    background = np.minimum(background, 1.0 - background)
    peak = ink.max(axis=(1, 2)).astype(np.float64)
    span = peak - background
    blank = span < config.min_contrast
    floor = background + config.noise_floor * span
    scale = np.where(blank, 1.0, peak - floor)  # a blank image's range may be 0: it is zeroed below
    # float32 arithmetic, as a float32 array with a Python float scalar would give (one image).
    ink = (ink - floor.astype(np.float32)[:, None, None]) / scale.astype(np.float32)[:, None, None]
    ink = np.clip(ink, 0.0, 1.0)
    ink[blank] = 0.0
    return ink, blank


def to_ink(gray: np.ndarray, config: PreprocessConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Grayscale in [0, 1] -> ink map in MNIST polarity (ink near 1, background exactly 0).

    The background is what the border mostly holds: a bright border means dark ink on paper, so
    the image is inverted. The background level is then subtracted and the ink rescaled to a peak
    of 1, with everything below ``noise_floor`` of that range set to 0.

    Raises NoInkError when the image has too little contrast to hold a digit.
    """
    gray = np.asarray(gray, dtype=np.float32)
    if gray.ndim != 2 or gray.size == 0:
        raise NoInkError("expected a non-empty 2-D image")
    inks, blank = to_inks(gray[None], config)
    if blank[0]:
        raise NoInkError(BLANK)
    return inks[0]


def resize_ink(ink: np.ndarray, width: int, height: int) -> np.ndarray:
    """Anti-aliased resize of a float ink map (Pillow's bilinear filter widens on downscaling)."""
    source = np.ascontiguousarray(ink, dtype=np.float32)
    image = Image.frombuffer("F", (source.shape[1], source.shape[0]), source, "raw", "F", 0, 1)
    resized = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.frombuffer(resized.tobytes(), dtype=np.float32).reshape(height, width)


def _bilinear_weights(starts: np.ndarray, sizes: np.ndarray, outs: np.ndarray, length: int, out_length: int) -> np.ndarray:
    """[N, out_length, length]: for each image, the matrix that resamples the span
    [start, start + size) of an axis of ``length`` pixels to ``out`` pixels (rows past ``out`` are
    zero), with the coefficients of Pillow's BILINEAR filter (``Resample.c``): a triangle widened
    by the scale when shrinking (so that it averages instead of skipping pixels), each row
    normalised over the span's pixels. Matrices instead of Pillow's loops let one matrix product
    resize a whole batch."""
    scale = sizes / outs
    support = np.maximum(scale, 1.0)[:, None, None]  # the triangle's half-width, in input pixels
    centre = ((np.arange(out_length) + 0.5)[None, :] * scale[:, None] - 0.5)[..., None]  # [N, out, 1]
    x = (np.arange(length)[None, :] - starts[:, None])[:, None, :]  # [N, 1, length], span coordinates
    # Pixels of the span, rows of the output: 1.0 or 0.0 (a float mask multiplies fast).
    inside = ((x >= 0) & (x < sizes[:, None, None])).astype(np.float64)
    used = (np.arange(out_length)[None, :] < outs[:, None])[..., None].astype(np.float64)
    weights = np.maximum(1.0 - np.abs(x - centre) / support, 0.0)
    weights *= inside
    weights *= used
    total = weights.sum(axis=2, keepdims=True)
    return np.divide(weights, total, out=weights, where=total > 0)


# From this many images on, ``inks_to_arrays`` resizes with matrices (measured crossover: ~4), in
# blocks of at most BLOCK images (larger blocks fall out of the cache: 9 -> 15 us per image).
BATCH_FROM = 4
BLOCK = 1024


def ink_to_array(ink: np.ndarray, config: PreprocessConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Ink map of one digit -> the 28x28 MNIST-style array in [0, 1]: ``inks_to_arrays`` for one
    image, step by step with Pillow's resize."""
    rows = np.flatnonzero(ink.any(axis=1))  # ink is never negative
    cols = np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        raise NoInkError("no ink found in the digit image")
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = crop.shape
    scale = config.box / max(height, width)
    new_h = max(1, round(height * scale))
    new_w = max(1, round(width * scale))
    patch = np.maximum(resize_ink(crop, new_w, new_h), 0.0)
    peak = float(patch.max())
    if peak <= 0:
        raise NoInkError("no ink left after resizing")
    patch /= peak
    if config.centre == "box":
        top, left = (config.canvas - new_h) // 2, (config.canvas - new_w) // 2
    else:
        mass = patch.sum(dtype=np.float64)
        com_y = float((patch.sum(axis=1, dtype=np.float64) * np.arange(new_h)).sum() / mass)
        com_x = float((patch.sum(axis=0, dtype=np.float64) * np.arange(new_w)).sum() / mass)
        centre = (config.canvas - 1) / 2.0
        top = min(max(round(centre - com_y), 0), config.canvas - new_h)
        left = min(max(round(centre - com_x), 0), config.canvas - new_w)
    canvas = np.zeros((config.canvas, config.canvas), dtype=np.float32)
    canvas[top : top + new_h, left : left + new_w] = patch
    return canvas


def inks_to_arrays(inks: np.ndarray, config: PreprocessConfig = DEFAULT_CONFIG) -> np.ndarray:
    """[N, H, W] ink maps of one digit each -> [N, 28, 28] MNIST-style arrays in [0, 1] (not yet
    normalised).

    For each image: crop to the ink's bounding box, resize with Pillow's bilinear filter so its
    longer side is ``box`` pixels (aspect ratio kept), rescale to a peak of 1, and paste so the
    centre of mass (or, with ``centre="box"``, the box) lies at the canvas centre. A few images
    take these steps one by one (Pillow's resize costs least per call); a batch takes them as a few
    array operations over all of its images, the resize as matrix products with Pillow's
    coefficients: the same arrays (to float rounding), ~4x faster per image from a handful on.

    Raises NoInkError (``index``: the first such image) for a map with no ink.
    """
    inks = np.asarray(inks, dtype=np.float32)
    if len(inks) < BATCH_FROM:
        step, size = (lambda part: ink_to_array(part[0], config)[None]), 1
    else:
        step, size = (lambda part: _inks_to_arrays_at_once(part, config)), BLOCK
    parts = []
    for start in range(0, len(inks), size):
        try:
            parts.append(step(inks[start : start + size]))
        except NoInkError as error:
            raise NoInkError(str(error), index=start + (error.index or 0)) from None
    return np.concatenate(parts) if parts else np.empty((0, config.canvas, config.canvas), np.float32)


def _inks_to_arrays_at_once(inks: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """``inks_to_arrays`` for a batch, in array operations over all of its images."""
    count, height, width = inks.shape
    rows, cols = inks.any(axis=2), inks.any(axis=1)  # ink is never negative
    empty = ~rows.any(axis=1)
    if empty.any():
        raise NoInkError("no ink found in the digit image", index=int(np.argmax(empty)))
    top, left = rows.argmax(axis=1), cols.argmax(axis=1)
    crop_h = height - rows[:, ::-1].argmax(axis=1) - top
    crop_w = width - cols[:, ::-1].argmax(axis=1) - left
    scale = config.box / np.maximum(crop_h, crop_w)
    new_h = np.maximum(np.rint(crop_h * scale), 1).astype(np.int64)
    new_w = np.maximum(np.rint(crop_w * scale), 1).astype(np.int64)
    across = _bilinear_weights(left, crop_w, new_w, width, config.box).astype(np.float32)
    down = _bilinear_weights(top, crop_h, new_h, height, config.box).astype(np.float32)
    patches = np.maximum(down @ (inks @ across.transpose(0, 2, 1)), 0.0)  # [N, box, box], zero past new_h, new_w
    peak = patches.max(axis=(1, 2))
    if (peak <= 0).any():
        raise NoInkError("no ink left after resizing", index=int(np.argmax(peak <= 0)))
    patches /= peak[:, None, None]

    if config.centre == "box":
        paste_top, paste_left = (config.canvas - new_h) // 2, (config.canvas - new_w) // 2
    else:
        mass = patches.sum(axis=(1, 2), dtype=np.float64)
        offsets = np.arange(config.box)
        com_y = (patches.sum(axis=2, dtype=np.float64) * offsets).sum(axis=1) / mass
        com_x = (patches.sum(axis=1, dtype=np.float64) * offsets).sum(axis=1) / mass
        centre = (config.canvas - 1) / 2.0
        paste_top = np.minimum(np.maximum(np.rint(centre - com_y).astype(np.int64), 0), config.canvas - new_h)
        paste_left = np.minimum(np.maximum(np.rint(centre - com_x).astype(np.int64), 0), config.canvas - new_w)
    # Paste each box-sized patch (zero past its resized size) onto a canvas with room for it.
    canvas = np.zeros((count, config.canvas + config.box, config.canvas + config.box), dtype=np.float32)
    ys = (paste_top[:, None] + np.arange(config.box))[:, :, None]
    xs = (paste_left[:, None] + np.arange(config.box))[:, None, :]
    canvas[np.arange(count)[:, None, None], ys, xs] = patches
    return canvas[:, : config.canvas, : config.canvas]


def normalise(arrays: np.ndarray, config: PreprocessConfig = DEFAULT_CONFIG) -> torch.Tensor:
    """[N, 28, 28] arrays in [0, 1] -> the network's input tensor [N, 1, 28, 28]."""
    tensor = torch.as_tensor(np.asarray(arrays, dtype=np.float32))
    return ((tensor - config.mean) / config.std).unsqueeze(1)


def preprocess_digit(image: Image.Image | np.ndarray, config: PreprocessConfig = DEFAULT_CONFIG) -> np.ndarray:
    """One digit image (PIL image, or grayscale array in [0, 1]) -> 28x28 array in [0, 1].

    With ``FASHION_CONFIG`` the same steps normalise one garment the way Fashion-MNIST did."""
    gray = to_gray(image) if isinstance(image, Image.Image) else image
    return ink_to_array(to_ink(gray, config), config)


def preprocess_digits(images: Sequence[Image.Image | np.ndarray] | np.ndarray,
                      config: PreprocessConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Many digit images -> [N, 28, 28], what ``preprocess_digit`` gives each one (to float
    rounding), with the steps done once per group of same-sized images (what batches and data
    sets hold) instead of once per image.

    Raises ``NoInkError`` for the first image (in order) that holds no digit, with its position
    as ``error.index``.
    """
    grays = [to_gray(image) if isinstance(image, Image.Image) else np.asarray(image, dtype=np.float32)
             for image in images]
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for position, gray in enumerate(grays):
        if gray.ndim != 2 or gray.size == 0:
            raise NoInkError("expected a non-empty 2-D image", index=position)
        by_shape.setdefault(gray.shape, []).append(position)
    groups = [(positions, *to_inks(np.stack([grays[p] for p in positions]), config)) for positions in by_shape.values()]
    blanks = [p for positions, _, blank in groups for p, empty in zip(positions, blank, strict=True) if empty]
    if blanks:
        raise NoInkError(BLANK, index=min(blanks))
    out = np.empty((len(grays), config.canvas, config.canvas), dtype=np.float32)
    for positions, inks, _ in groups:
        try:
            out[positions] = inks_to_arrays(inks, config)
        except NoInkError as error:
            raise NoInkError(str(error), index=positions[error.index or 0]) from None
    return out
