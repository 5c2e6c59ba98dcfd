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
from dataclasses import asdict, dataclass, replace

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
# How far (a share of the row's digit height) faint ink shared by two digits is spread from
# their strokes.
_FAINT_REACH = 0.15
# A fragment this close to a digit (a share of the row's digit height) may belong to it.
_FRAGMENT_REACH = 0.2
# Pieces shorter than this share of the row's median height are broken strokes, not digits.
_FRAGMENT_HEIGHT = 0.45
# Pieces lighter than this share of the row's median digit mass are slivers of a digit, however
# tall: the lightest whole digit of MNIST's test split (a thin "1") has 0.28 of the median
# digit's stroke pixels.
_SLIVER_MASS = 0.15
# Two neighbouring glyphs narrower together than this (in row heights) may be one broken digit.
_JOINED_WIDTH = 1.1
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
    """The strokes' connected components: their label map and one glyph per component."""
    labels, count = label_components(ink > _STROKE_LEVEL)
    top, bottom, left, right = _boxes(labels, count)
    mass = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=count + 1)
    return labels, [_Glyph(int(left[i]), int(right[i]), int(top[i]), int(bottom[i]), [i], float(mass[i]))
                    for i in range(1, count + 1)]


def _claim_faint_ink(labels: np.ndarray, ink: np.ndarray, steps: int) -> np.ndarray:
    """``labels`` grown into the ink too faint to be a stroke (anti-aliased edges, a lightly
    drawn loop). Without it a digit is read without its soft edges and light strokes, which
    MNIST's digits have: a "9" whose loop is faint reads as a "7".

    Faint ink connected to one component's strokes is that component's. Where faint ink joins
    several (two digits' soft edges touching), each faint pixel goes to the component reached
    first through the faint ink, up to ``steps`` pixels away. Faint ink touching no strokes stays
    unclaimed: it is noise.
    """
    regions, count = label_components(ink > 0)
    strokes = labels > 0
    base = int(labels.max()) + 1  # (region, label) pairs encoded as region * base + label
    pairs = np.unique(regions[strokes].astype(np.int64) * base + labels[strokes])
    region_of, label_of = np.divmod(pairs, base)
    owners = np.bincount(region_of, minlength=count + 1)
    single = owners[region_of] == 1
    owner = np.zeros(count + 1, dtype=labels.dtype)
    owner[region_of[single]] = label_of[single]
    grown = np.where(strokes, labels, owner[regions])
    shared = np.flatnonzero(owners > 1)
    if shared.size:
        boxes = _boxes(regions, count)
        for region in shared:
            window = (slice(boxes[0][region], boxes[1][region] + 1), slice(boxes[2][region], boxes[3][region] + 1))
            grown[window] = _grow(grown[window], regions[window] == region, steps)
    return grown


def _boxes(labels: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top, bottom, left and right (inclusive) of each label 1..count of a label map, indexed by
    label (index 0, the background, is meaningless)."""
    ys, xs = np.nonzero(labels)
    which = labels[ys, xs]
    top, left = np.full(count + 1, labels.shape[0]), np.full(count + 1, labels.shape[1])
    bottom, right = np.zeros(count + 1, dtype=np.intp), np.zeros(count + 1, dtype=np.intp)
    np.minimum.at(top, which, ys)
    np.maximum.at(bottom, which, ys)
    np.minimum.at(left, which, xs)
    np.maximum.at(right, which, xs)
    return top, bottom, left, right


def _grow(labels: np.ndarray, within: np.ndarray, steps: int) -> np.ndarray:
    """Spread non-zero ``labels`` into the zero pixels of ``within``, one pixel (8-connected) per step."""
    grown = labels.copy()
    unclaimed = within & (grown == 0)
    height, width = grown.shape
    for _ in range(steps):
        padded = np.pad(grown, 1)
        reach = np.zeros_like(grown)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                np.maximum(reach, padded[dy : dy + height, dx : dx + width], out=reach)
        claimed = unclaimed & (reach > 0)
        if not claimed.any():
            break
        grown[claimed] = reach[claimed]
        unclaimed &= ~claimed
    return grown


def _overlap(a: _Glyph, b: _Glyph) -> int:
    return max(0, min(a.right, b.right) - max(a.left, b.left) + 1)


def _gap(a: _Glyph, b: _Glyph) -> int:
    """Blank pixels between two glyphs' boxes, across or down, whichever is more (0: they touch)."""
    across = max(a.left - b.right, b.left - a.right, 1) - 1
    down = max(a.top - b.bottom, b.top - a.bottom, 1) - 1
    return max(across, down)


def _stack(glyphs: list[_Glyph], row_height: float) -> list[_Glyph]:
    """Merge components that stand over the same columns, left to right: the pieces of a digit
    broken in two, or of a faint one broken in many. A short piece that starts left of a tall
    one is not merged into it: it may be the previous digit's bar reaching over (a "5" before a
    "1"), which ``_attach_fragments`` settles."""
    merged: list[_Glyph] = []
    for glyph in sorted(glyphs, key=lambda g: (g.left, -g.mass)):
        last = merged[-1] if merged else None
        if (last is not None and _overlap(last, glyph) >= _MERGE_OVERLAP * min(last.width, glyph.width)
                and not (last.height < _FRAGMENT_HEIGHT * row_height <= glyph.height)):
            merged[-1].absorb(glyph)
        else:
            merged.append(glyph)
    return merged


def _own_ink(glyph: _Glyph, labels: np.ndarray, ink: np.ndarray,
             boxes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """The glyph's ink and nothing else: its components' pixels (faint edges included; ``boxes``
    holds where each component reaches), cropped to their box."""
    top, bottom, left, right = (part[glyph.labels] for part in boxes)
    window = (slice(top.min(), bottom.max() + 1), slice(left.min(), right.max() + 1))
    return _trim(np.where(np.isin(labels[window], glyph.labels), ink[window], 0.0))


def _trim(ink: np.ndarray) -> np.ndarray:
    """An ink map cropped to the box of its ink."""
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _attach_fragments(digits: list[_Glyph], fragments: list[_Glyph], specks: list[_Glyph], row_height: float,
                      judge: Judge | None, read: Callable[[list[_Glyph]], np.ndarray],
                      holds: Callable[[list[_Glyph]], np.ndarray] | None = None) -> None:
    """Give each fragment (a detached bar, dot or broken stroke) to the digit it belongs to.

    A fragment near one digit joins it. Near two (a "5"'s bar reaching over the gap to the next
    digit), the judge decides: it joins the neighbour with which both digits read more surely,
    the surer of the two readings' less certain digit, as cuts are chosen. With ``holds`` (the
    glyph counter's probabilities), each side is also weighed by the odds that the neighbour,
    fragment joined, still holds as many digits as it did without it: the loop of a broken "6"
    joined to the "8" before it makes a glyph the counter sees as two digits, while the "6" it
    came from reads only fairly surely without it. Far from every digit, a speck is dirt and is
    dropped; a larger piece joins the nearest digit.
    """
    reach = _FRAGMENT_REACH * row_height
    contested: list[tuple[_Glyph, _Glyph, _Glyph]] = []
    for fragment, speck in [(f, False) for f in fragments] + [(f, True) for f in specks]:
        near = sorted(digits, key=lambda g: (_gap(g, fragment), -_overlap(g, fragment)))[:2]
        within = [g for g in near if _gap(g, fragment) <= reach]
        if len(within) == 2 and judge is not None and all(g.width < _MIGHT_BE_TWO * row_height for g in within):
            contested.append((fragment, within[0], within[1]))
        elif within or not speck:
            near[0].absorb(fragment)
    if not contested:
        return
    candidates: list[_Glyph] = []
    for fragment, first, second in contested:
        for glyph in (first, second):
            joined = replace(glyph, labels=list(glyph.labels))
            joined.absorb(fragment)
            candidates += [glyph, joined]
    confidence = judge(read(candidates)).reshape(-1, 4)  # per fragment: first, first + it, second, second + it
    # per fragment: (first, first + it), (second, second + it), each the counter's [most] odds
    kept = holds(candidates).reshape(len(contested), 2, 2, -1) if holds is not None else None
    for n, ((fragment, first, second), (a, a_with, b, b_with)) in enumerate(zip(contested, confidence)):
        to_first, to_second = min(a_with, b), min(a, b_with)
        if kept is not None:
            # P(the neighbour with the fragment holds as many digits as the neighbour without it)
            (first_alone, first_with), (second_alone, second_with) = kept[n]
            to_first *= first_with[np.argmax(first_alone)]
            to_second *= second_with[np.argmax(second_alone)]
        (first if to_first >= to_second else second).absorb(fragment)


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


GlyphCounts = Callable[[np.ndarray], np.ndarray]
"""Given [N, 32, 96] glyph arrays (``glyph_to_array``), the probability that each holds 1, 2, ...
digits: [N, most] (the glyph counter's softmax)."""

# The canvas a glyph is drawn on for the glyph counter: the row's digit height becomes
# ``GLYPH_ROW`` pixels, so a glyph's width keeps its meaning (two touching digits span about
# 1.4 row heights, 28 pixels; four fit in 96).
GLYPH_HEIGHT, GLYPH_WIDTH, GLYPH_ROW = 32, 96, 20
# Glyphs narrower than this (in row heights) are one digit without asking the counter: two
# touching "1"s are the narrowest pair, and they are wider.
COUNTED_WIDTH = 0.5
# Readings the counter gives less than this probability are not tried.
_COUNT_FLOOR = 1e-3


@dataclass(frozen=True)
class StripGlyph:
    """One connected run of a strip's ink as segmentation found it: its own ink cropped to its
    box (a digit, or several touching ones), the strip columns its strokes span, and the row's
    digit height (the scale every width is measured against)."""

    ink: np.ndarray
    left: int
    right: int  # inclusive
    row_height: float

    @property
    def width_ratio(self) -> float:
        """The strokes' width in row heights: how many digits the glyph could hold."""
        return (self.right - self.left + 1) / self.row_height


def glyph_to_array(glyph: StripGlyph) -> np.ndarray:
    """A glyph -> the [32, 96] array in [0, 1] the glyph counter reads: drawn at the row's scale
    (the row's digit height becomes 20 pixels; shrunk further only if it would not fit), peak 1,
    centred. The scale is the row's, not the glyph's own, because width relative to the row is
    what tells one wide digit from two narrow touching ones."""
    height, width = glyph.ink.shape
    scale = GLYPH_ROW / glyph.row_height
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    if new_h > GLYPH_HEIGHT or new_w > GLYPH_WIDTH:
        shrink = min(GLYPH_HEIGHT / new_h, GLYPH_WIDTH / new_w)
        new_h, new_w = max(1, int(new_h * shrink)), max(1, int(new_w * shrink))
    patch = np.maximum(_resize(glyph.ink, new_w, new_h), 0.0)
    patch /= max(float(patch.max()), 1e-6)
    canvas = np.zeros((GLYPH_HEIGHT, GLYPH_WIDTH), dtype=np.float32)
    top, left = (GLYPH_HEIGHT - new_h) // 2, (GLYPH_WIDTH - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = patch
    return canvas


def _split_options(own: np.ndarray, pieces_wanted: Sequence[int]) -> list[list[np.ndarray]]:
    """The glyph whole and cut into each number of ``pieces_wanted`` (> 1) at the thinnest columns
    (cuts that would leave a piece without ink are skipped)."""
    profile = (own > _STROKE_LEVEL).sum(axis=0)
    strokes = np.flatnonzero(profile)  # cuts go by the strokes, not their faint edges
    first, last = int(strokes[0]), int(strokes[-1]) + 1
    options: list[list[np.ndarray]] = [[own]]
    for pieces in pieces_wanted:
        bounds = [first + cut for cut, _ in _cuts(profile[first:last], pieces)][1:]
        parts = [own[:, a:b] for a, b in zip([0, *bounds], [*bounds, own.shape[1]])]
        if all(part.any() for part in parts):
            options.append(parts)
    return options


# Two touching digits are also cut at every few columns across the middle 60% of the glyph (the judge
# picks the cut): the thinnest column is often inside a digit, where a loop narrows.
_PAIR_CUT_SPAN = (0.2, 0.8)
_PAIR_CUTS = 40


def _pair_cuts(own: np.ndarray) -> list[list[np.ndarray]]:
    """The glyph cut in two at evenly spaced columns across the middle of its strokes."""
    strokes = np.flatnonzero((own > _STROKE_LEVEL).any(axis=0))
    first, width = int(strokes[0]), int(strokes[-1]) + 1 - int(strokes[0])
    low, high = (first + round(share * width) for share in _PAIR_CUT_SPAN)
    step = max(1, width // _PAIR_CUTS)
    options = [[own[:, :cut], own[:, cut:]] for cut in range(low, high + 1, step)]
    return [parts for parts in options if all(part.any() for part in parts)]


def _readable(options: list[list[np.ndarray]], config: PreprocessConfig) -> list[tuple[list[np.ndarray], np.ndarray]]:
    """Each option with its pieces as 28x28 arrays; options with a piece that holds no digit dropped."""
    out = []
    for parts in options:
        try:
            out.append((parts, np.stack([ink_to_array(p, config) for p in parts])))
        except NoInkError:
            continue
    return out


def _least_confident(readable: list[tuple[list[np.ndarray], np.ndarray]], judge: Judge) -> list[float]:
    """Per option, the judge's confidence in its least certain digit (one call for all): a
    reading is as good as its weakest digit. The halves of a wide "0" may each look like a "1",
    but rarely more surely than the whole looks like a "0"."""
    confidence = judge(np.concatenate([arrays for _, arrays in readable]))
    bounds = np.cumsum([0] + [len(arrays) for _, arrays in readable])
    return [float(confidence[a:b].min()) for a, b in zip(bounds[:-1], bounds[1:])]


def _counted_split(glyph: StripGlyph, counts: np.ndarray, judge: Judge | None, config: PreprocessConfig) -> list[np.ndarray]:
    """A glyph cut as the glyph counter and the judge together read it best.

    Each number of digits the counter finds plausible is tried (cut at the thinnest columns;
    two digits also at every few columns across the glyph's middle, ``_pair_cuts``); the reading
    maximising log P(count) + log(confidence in its least certain digit) wins. The counter knows
    the shapes of touching digits; the judge knows where a cut leaves two good digits. Without a
    judge, the counter's most likely count decides.
    """
    plausible = [k for k in range(2, len(counts) + 1) if counts[k - 1] >= _COUNT_FLOOR]
    if not plausible:
        return [glyph.ink]
    options = _split_options(glyph.ink, plausible)
    if judge is None:
        wanted = int(np.argmax(counts)) + 1
        return min(options, key=lambda o: abs(len(o) - wanted))
    if 2 in plausible:
        options += _pair_cuts(glyph.ink)
    readable = _readable(options, config)
    if not readable:
        return [glyph.ink]
    least = _least_confident(readable, judge)
    scores = [np.log(counts[len(parts) - 1] + 1e-12) + np.log(confidence + 1e-12)
              for (parts, _), confidence in zip(readable, least)]
    return readable[int(np.argmax(scores))][0]


def _best_split(glyph: StripGlyph, judge: Judge | None, config: PreprocessConfig) -> list[np.ndarray]:
    """One glyph that may be several touching digits -> its digits, without a glyph counter.

    Narrow glyphs (measured against the row's digit height) are one digit. A wider one is cut
    into k = 1, 2, ... pieces at the thinnest columns, and the reading whose least confident
    digit the judge is surest of wins (a tie going to fewer pieces); a glyph of borderline width
    only splits in two on a clear gain. Without a judge, width alone decides.
    """
    own, ratio = glyph.ink, glyph.width_ratio
    if ratio < (_MIGHT_BE_TWO if judge is not None else _MAYBE_SEVERAL):
        return [own]
    most = 2 if ratio < _MAYBE_SEVERAL else max(2, min(4, int(ratio / 0.55)))
    options = _split_options(own, range(2, most + 1))
    if judge is None:
        wanted = 1 if ratio < _SURELY_SEVERAL else max(2, round(ratio / 0.8))
        return min(options, key=lambda o: abs(len(o) - wanted))
    readable = _readable(options, config)
    scores = [confidence - _SPLIT_PRIOR * (len(parts) - 1)
              for (parts, _), confidence in zip(readable, _least_confident(readable, judge))]
    if ratio < _MAYBE_SEVERAL:  # borderline width: two digits only if clearly better read as two
        whole = next((s for (parts, _), s in zip(readable, scores) if len(parts) == 1), -1.0)
        two = next(((parts, s) for (parts, _), s in zip(readable, scores) if len(parts) == 2), None)
        return two[0] if two is not None and two[1] - whole > _CLEAR_GAIN else [own]
    return readable[int(np.argmax(scores))][0]


def find_glyphs(ink: np.ndarray, judge: Judge | None = None, config: PreprocessConfig = DEFAULT_CONFIG,
                counter: GlyphCounts | None = None) -> list[StripGlyph]:
    """An ink map holding a row of digits -> its glyphs, left to right: each a digit or several
    touching ones, not yet cut apart.

    The strokes' connected components are found; those stacked over the same columns are
    merged (a digit broken in two); pieces too short or too light to be a digit (a detached bar,
    a dot, a sliver of stroke) are given to the digit they belong to (``judge``, the digit
    classifier's confidence, and ``counter``, the glyph counter, settle a piece between two
    digits), and specks far from every digit dropped. With both, neighbours that read better as
    one digit than as two are joined (a digit broken side by side). Each glyph keeps only its own
    ink, faint edges included, so a neighbour reaching into its bounding box does not leak into it.
    """
    labels, glyphs = _glyphs(ink)
    if not glyphs:
        raise NoInkError("no digit found in the strip")
    tallest = max(g.height for g in glyphs)
    # The digits' height: broken strokes and specks, however many, do not pull it down.
    row_height = float(np.median([g.height for g in glyphs if g.height >= 0.5 * tallest]))
    biggest = max(g.mass for g in glyphs)
    is_speck = [g.mass < _SPECK_MASS * biggest and g.height < _SPECK_HEIGHT * tallest for g in glyphs]
    specks = [g for g, speck in zip(glyphs, is_speck) if speck]
    # Specks are not stacked: a column of dots would stand as tall as a "1".
    groups = _stack([g for g, speck in zip(glyphs, is_speck) if not speck], row_height)
    tall = [g for g in groups if g.height >= _FRAGMENT_HEIGHT * row_height]
    typical_mass = float(np.median([g.mass for g in tall])) if tall else 0.0
    digits = [g for g in tall if g.mass >= _SLIVER_MASS * typical_mass]
    fragments = [g for g in groups if g not in digits]
    labels = _claim_faint_ink(labels, ink, max(2, round(_FAINT_REACH * row_height)))
    boxes = _boxes(labels, len(glyphs))

    def strip_glyph(glyph: _Glyph) -> StripGlyph:
        # A glyph's left and right are its strokes' (its components before faint ink was
        # claimed): widths go by the strokes, not their soft edges.
        return StripGlyph(_own_ink(glyph, labels, ink, boxes), glyph.left, glyph.right, row_height)

    def read(candidates: list[_Glyph]) -> np.ndarray:
        return np.stack([ink_to_array(_own_ink(g, labels, ink, boxes), config) for g in candidates])

    def holds(candidates: list[_Glyph]) -> np.ndarray:
        return count_digits([strip_glyph(g) for g in candidates], counter)

    _attach_fragments(digits, fragments, specks, row_height, judge, read, holds if counter is not None else None)
    if judge is not None and counter is not None:
        digits = _join_broken(digits, row_height, judge, read, holds)
    return [strip_glyph(digit) for digit in digits]


def _join_broken(digits: list[_Glyph], row_height: float, judge: Judge,
                 read: Callable[[list[_Glyph]], np.ndarray], holds: Callable[[list[_Glyph]], np.ndarray]) -> list[_Glyph]:
    """Neighbouring glyphs that are one digit broken in two side by side (a "4" whose bar lost
    its stem, an "8" whose loops parted) joined.

    Each pair close enough and narrow enough together to be one digit is read both ways: as
    two digits, scored by the less certain one's confidence times the counter's odds that each
    is one digit; joined, by the confidence in the whole times the odds that it is one digit.
    The counter sees two close digits as two, so real neighbours stay apart.
    """
    pairs = [i for i in range(len(digits) - 1)
             if _gap(digits[i], digits[i + 1]) <= _FRAGMENT_REACH * row_height
             and (max(digits[i].right, digits[i + 1].right) - digits[i].left + 1) < _JOINED_WIDTH * row_height]
    if not pairs:
        return digits
    joined = []
    for i in pairs:
        whole = replace(digits[i], labels=list(digits[i].labels))
        whole.absorb(digits[i + 1])
        joined.append(whole)
    candidates = [digits[i] for i in pairs] + [digits[i + 1] for i in pairs] + joined
    confidence = judge(read(candidates)).reshape(3, -1)
    one = holds(candidates)[:, 0].reshape(3, -1)
    apart = np.minimum(confidence[0], confidence[1]) * one[0] * one[1]
    together = confidence[2] * one[2]
    join = {i: whole for i, whole, one_digit, two in zip(pairs, joined, together, apart) if one_digit > two}
    out: list[_Glyph] = []
    i = 0
    while i < len(digits):
        out.append(join.get(i, digits[i]))
        i += 2 if i in join else 1
    return out


def count_digits(glyphs: Sequence[StripGlyph], counter: GlyphCounts) -> np.ndarray:
    """The counter's odds that each glyph holds 1, 2, ... digits ([N, most]), in one call; a
    glyph narrower than ``COUNTED_WIDTH`` row heights is one digit without asking."""
    counted = [i for i, g in enumerate(glyphs) if g.width_ratio >= COUNTED_WIDTH]
    odds = counter(np.stack([glyph_to_array(glyphs[i]) for i in counted])) if counted else None
    most = odds.shape[1] if odds is not None else 1
    out = np.zeros((len(glyphs), most), dtype=np.float32)
    out[:, 0] = 1.0
    if odds is not None:
        out[counted] = odds
    return out


def split_ink(ink: np.ndarray, judge: Judge | None = None, config: PreprocessConfig = DEFAULT_CONFIG,
              counter: GlyphCounts | None = None) -> list[np.ndarray]:
    """An ink map holding a row of digits -> one ink map per digit, left to right.

    The glyphs (``find_glyphs``) wide enough to be several touching digits are cut where the
    glyph counter and ``judge`` (the digit classifier) together read them best; without a
    counter, where the judge alone does (``_best_split``).
    """
    glyphs = find_glyphs(ink, judge, config, counter)
    if counter is None:
        return [piece for glyph in glyphs for piece in _best_split(glyph, judge, config)]
    pieces: list[np.ndarray] = []
    for glyph, counts in zip(glyphs, count_digits(glyphs, counter)):
        if glyph.width_ratio >= COUNTED_WIDTH:
            pieces.extend(_counted_split(glyph, counts, judge, config))
        else:
            pieces.append(glyph.ink)
    return pieces


def preprocess_strip(image: Image.Image | np.ndarray, judge: Judge | None = None,
                     config: PreprocessConfig = DEFAULT_CONFIG, counter: GlyphCounts | None = None) -> np.ndarray:
    """A strip image (a row of digits, either polarity) -> [N, 28, 28] arrays, left to right.

    ``counter`` (the glyph counter's probabilities) and ``judge`` (the digit classifier's
    confidence) settle whether a wide glyph is one digit or several touching ones; without
    either, the glyph's width alone decides.
    """
    gray = to_gray(image) if isinstance(image, Image.Image) else image
    pieces = split_ink(to_ink(gray, config), judge, config, counter)
    return np.stack([ink_to_array(piece, config) for piece in pieces])
