"""The one image preprocessing shared by training and serving.

MNIST digits are white ink on black, size-normalised so the ink's bounding box fits a 20x20 box
(aspect ratio kept) and then centred by centre of mass in a 28x28 canvas. Users send anything:
black ink on white paper, photos, 4000-pixel scans, strips of several digits. Every image, the
MNIST training images included, goes through the same steps below, so the networks only ever
see what serving will give them:

1. ``to_gray``: any PIL image -> float grayscale in [0, 1] (alpha flattened onto white).
2. ``to_ink``: detect the polarity from the border, remove the background level -> "ink" in
   [0, 1], MNIST polarity (ink high, background 0).
3. ``ink_to_tensor``: crop to the ink, resize keeping the aspect ratio, centre by mass, normalise.
4. ``split_strip``: cut an ink map holding a row of digits into one ink map per digit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image

from model.components import label_components


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


def _resize(ink: np.ndarray, width: int, height: int) -> np.ndarray:
    """Anti-aliased resize of a float ink map (Pillow's bilinear filter widens on downscaling)."""
    source = np.ascontiguousarray(ink, dtype=np.float32)
    image = Image.frombuffer("F", (source.shape[1], source.shape[0]), source, "raw", "F", 0, 1)
    resized = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.frombuffer(resized.tobytes(), dtype=np.float32).reshape(height, width)


def ink_to_array(ink: np.ndarray, config: PreprocessConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Ink map of one digit -> the 28x28 MNIST-style array in [0, 1] (not yet normalised).

    Crop to the ink's bounding box, resize so its longer side is ``box`` pixels (aspect ratio
    kept), rescale to a peak of 1, and paste so the centre of mass (or, with ``centre="box"``,
    the box) lies at the canvas centre.
    """
    rows = np.flatnonzero(ink.any(axis=1))  # ink is never negative
    cols = np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        raise NoInkError("no ink found in the digit image")
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = crop.shape
    scale = config.box / max(height, width)
    new_h = max(1, round(height * scale))
    new_w = max(1, round(width * scale))
    patch = np.maximum(_resize(crop, new_w, new_h), 0.0)
    peak = float(patch.max())
    if peak <= 0:
        raise NoInkError("no ink left after resizing")
    patch /= peak

    if config.centre == "box":
        top, left = (config.canvas - new_h) // 2, (config.canvas - new_w) // 2
    else:
        total = float(patch.sum())
        com_y = float((np.arange(new_h)[:, None] * patch).sum()) / total
        com_x = float((np.arange(new_w) * patch).sum()) / total
        centre = (config.canvas - 1) / 2.0
        top = min(max(round(centre - com_y), 0), config.canvas - new_h)
        left = min(max(round(centre - com_x), 0), config.canvas - new_w)
    canvas = np.zeros((config.canvas, config.canvas), dtype=np.float32)
    canvas[top : top + new_h, left : left + new_w] = patch
    return canvas


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
    """Many digit images -> [N, 28, 28], exactly what ``preprocess_digit`` gives each one, with
    the per-pixel steps done once per group of same-sized images (what batches and data sets
    hold) instead of once per image.

    Raises ``NoInkError`` for the first image (in order) that holds no digit, with its position
    as ``error.index``.
    """
    grays = [to_gray(image) if isinstance(image, Image.Image) else np.asarray(image, dtype=np.float32)
             for image in images]
    out = np.empty((len(grays), config.canvas, config.canvas), dtype=np.float32)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for position, gray in enumerate(grays):
        if gray.ndim != 2 or gray.size == 0:
            raise NoInkError("expected a non-empty 2-D image", index=position)
        by_shape.setdefault(gray.shape, []).append(position)
    inks: list[np.ndarray | None] = [None] * len(grays)
    for positions in by_shape.values():
        group, blank = to_inks(np.stack([grays[p] for p in positions]), config)
        for position, ink, empty in zip(positions, group, blank, strict=True):
            inks[position] = None if empty else ink
    for position, ink in enumerate(inks):
        if ink is None:
            raise NoInkError(BLANK, index=position)
        try:
            out[position] = ink_to_array(ink, config)
        except NoInkError as error:
            raise NoInkError(str(error), index=position) from None
    return out


# --- strips -------------------------------------------------------------------------------------

# Components whose mass is below this share of the largest one and that are also short are specks.
_SPECK_MASS = 0.04
_SPECK_HEIGHT = 0.3
# A component lying mostly (this share of its width) over another's columns belongs to that digit
# (a "5" whose top bar is detached, a broken stroke).
_MERGE_OVERLAP = 0.5
# Binarisation level for segmentation: lighter ink is anti-aliasing, not strokes.
_STROKE_LEVEL = 0.25
# Pieces shorter than this share of the row's median height are broken strokes, not digits.
_FRAGMENT_HEIGHT = 0.45
# Width, in units of the row's digit height, from which a glyph may be several touching digits
# (single MNIST digits: 1.25 at the 99th percentile), and from which it almost surely is (1.67 at
# the 99.9th). The row's height rather than the glyph's own: digits in a row share one scale, and
# a digit joined to a narrow "1" is no wider than one "0" of its own height, yet wider than a
# digit of the row.
_MAYBE_SEVERAL = 1.1
_SURELY_SEVERAL = 1.7
# Between these widths a glyph is cut in two only when the judge is clearly surer of both halves
# than of the whole (by this much of its top probability). Chosen on strips of training digits.
_MIGHT_BE_TWO = 0.9
_CLEAR_GAIN = 0.15
# Confidence a reading pays for each extra piece: ties go to fewer digits.
_SPLIT_PRIOR = 1e-3


@dataclass
class _Glyph:
    left: int
    right: int  # inclusive
    top: int
    bottom: int  # inclusive
    labels: list[int]
    mass: float

    @property
    def width(self) -> int:
        return self.right - self.left + 1

    @property
    def height(self) -> int:
        return self.bottom - self.top + 1

    def absorb(self, other: _Glyph) -> None:
        self.left, self.right = min(self.left, other.left), max(self.right, other.right)
        self.top, self.bottom = min(self.top, other.top), max(self.bottom, other.bottom)
        self.labels += other.labels
        self.mass += other.mass


def _glyphs(ink: np.ndarray) -> tuple[np.ndarray, list[_Glyph]]:
    labels, count = label_components(ink > _STROKE_LEVEL)
    glyphs: list[_Glyph] = []
    for index in range(1, count + 1):
        ys, xs = np.nonzero(labels == index)
        glyphs.append(
            _Glyph(int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max()), [index], float(ink[ys, xs].sum()))
        )
    return labels, glyphs


def _overlap(a: _Glyph, b: _Glyph) -> int:
    return max(0, min(a.right, b.right) - max(a.left, b.left) + 1)


def _group(glyphs: list[_Glyph]) -> list[_Glyph]:
    """Drop specks, then merge components that stack over the same columns, left to right."""
    if not glyphs:
        return []
    biggest = max(g.mass for g in glyphs)
    tallest = max(g.height for g in glyphs)
    kept = [g for g in glyphs if not (g.mass < _SPECK_MASS * biggest and g.height < _SPECK_HEIGHT * tallest)]
    kept.sort(key=lambda g: (g.left, -g.mass))
    merged: list[_Glyph] = []
    for glyph in kept:
        if merged:
            last = merged[-1]
            shared = _overlap(last, glyph)
            if shared >= _MERGE_OVERLAP * min(last.width, glyph.width):
                last.absorb(glyph)
                continue
        merged.append(glyph)
    return merged


def _absorb_fragments(groups: list[_Glyph]) -> list[_Glyph]:
    """Merge short pieces into the nearest neighbour: a digit stands at least ~0.8 of the row's
    typical height (MNIST's first percentile), a broken-off stroke well under half of it."""
    if len(groups) < 2:
        return groups
    height = float(np.median([g.height for g in groups]))
    groups = list(groups)
    while True:
        short = [i for i, g in enumerate(groups) if g.height < _FRAGMENT_HEIGHT * height]
        if not short or len(groups) < 2:
            return groups
        i = min(short, key=lambda k: groups[k].mass)
        piece = groups[i]
        neighbours = [k for k in (i - 1, i + 1) if 0 <= k < len(groups)]
        nearest = min(neighbours, key=lambda k: max(groups[k].left - piece.right, piece.left - groups[k].right, 0))
        groups[nearest].absorb(piece)
        del groups[i]


def _cuts(profile: np.ndarray, pieces: int) -> list[tuple[int, int]]:
    """Column ranges cutting a run of touching digits into ``pieces`` at the thinnest columns."""
    width = len(profile)
    cuts = [0]
    step = width / pieces
    for k in range(1, pieces):
        half = max(1, round(step * 0.35))
        lo, hi = max(cuts[-1] + 1, round(k * step) - half), min(width - 1, round(k * step) + half)
        window = profile[lo : hi + 1]
        cuts.append(lo + int(np.argmin(window)) if window.size else round(k * step))
    cuts.append(width)
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


Judge = Callable[[np.ndarray], np.ndarray]
"""Given [N, 28, 28] digit arrays, the classifier's confidence in each (its top probability)."""


def _best_split(own: np.ndarray, judge: Judge | None, config: PreprocessConfig, row_height: float | None = None) -> list[np.ndarray]:
    """One glyph that may be several touching digits -> its digits.

    Narrow glyphs (measured against ``row_height``, the row's digit height) are one digit. A
    wider one is cut into k = 1, 2, ... pieces at the thinnest columns, and the reading whose
    least confident digit the judge is surest of wins (a tie going to fewer pieces); a glyph of
    borderline width only splits in two on a clear gain. Without a judge, width alone decides.
    """
    height, width = own.shape
    ratio = width / (row_height or height)
    if ratio < (_MIGHT_BE_TWO if judge is not None else _MAYBE_SEVERAL):
        return [own]
    profile = (own > _STROKE_LEVEL).sum(axis=0)
    most = 2 if ratio < _MAYBE_SEVERAL else max(2, min(4, int(ratio / 0.55)))
    options: list[list[np.ndarray]] = [[own]]
    for pieces in range(2, most + 1):
        parts = [own[:, a:b] for a, b in _cuts(profile, pieces)]
        if all(p.max() > 0 for p in parts):
            options.append(parts)
    if judge is None:
        wanted = 1 if ratio < _SURELY_SEVERAL else max(2, round(ratio / 0.8))
        return min(options, key=lambda o: abs(len(o) - wanted))
    readable: list[tuple[list[np.ndarray], np.ndarray]] = []
    for parts in options:
        try:
            readable.append((parts, np.stack([ink_to_array(p, config) for p in parts])))
        except NoInkError:
            continue
    # One call to the judge for every candidate reading of this glyph.
    confidence = judge(np.concatenate([arrays for _, arrays in readable]))
    bounds = np.cumsum([0] + [len(arrays) for _, arrays in readable])
    # A reading is as good as its least certain digit: the halves of a wide "0" may each look
    # like a "1", but rarely more surely than the whole looks like a "0".
    scores = [float(confidence[a:b].min()) - _SPLIT_PRIOR * (b - a - 1) for a, b in zip(bounds[:-1], bounds[1:])]
    if ratio < _MAYBE_SEVERAL:  # borderline width: two digits only if clearly better read as two
        whole = next((s for (parts, _), s in zip(readable, scores) if len(parts) == 1), -1.0)
        two = next(((parts, s) for (parts, _), s in zip(readable, scores) if len(parts) == 2), None)
        return two[0] if two is not None and two[1] - whole > _CLEAR_GAIN else [own]
    return readable[int(np.argmax(scores))][0]


def split_ink(ink: np.ndarray, judge: Judge | None = None, config: PreprocessConfig = DEFAULT_CONFIG) -> list[np.ndarray]:
    """An ink map holding a row of digits -> one ink map per digit, left to right.

    Connected components are found, specks dropped, components stacked over the same columns
    or too short to be a digit merged into their neighbour (broken strokes), and glyphs wide
    enough to be several touching digits cut where ``judge`` (the digit classifier) reads
    them best. Each digit keeps only its own ink, so a neighbour reaching into its bounding box
    does not leak into it.
    """
    labels, glyphs = _glyphs(ink)
    groups = _absorb_fragments(_group(glyphs))
    if not groups:
        raise NoInkError("no digit found in the strip")
    row_height = float(np.median([g.height for g in groups]))
    digits: list[np.ndarray] = []
    for group in groups:
        window = (slice(group.top, group.bottom + 1), slice(group.left, group.right + 1))
        own = np.where(np.isin(labels[window], group.labels), ink[window], 0.0)
        digits.extend(_best_split(own, judge, config, row_height))
    return digits


def preprocess_strip(image: Image.Image | np.ndarray, judge: Judge | None = None,
                     config: PreprocessConfig = DEFAULT_CONFIG) -> np.ndarray:
    """A strip image (a row of digits, either polarity) -> [N, 28, 28] arrays, left to right.

    ``judge`` (the digit classifier's confidence) settles whether a wide glyph is one digit or
    several touching ones; without it the glyph's width alone decides.
    """
    gray = to_gray(image) if isinstance(image, Image.Image) else image
    pieces = split_ink(to_ink(gray, config), judge, config)
    return np.stack([ink_to_array(piece, config) for piece in pieces])
