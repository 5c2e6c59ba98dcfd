"""Strips of handwritten digits as they come from the world, synthesised from MNIST digits.

Real digit strings (an amount on a cheque, a number on a form) are dark ballpoint ink on
patterned paper, with dashes, commas and periods that are not digits, underlines and box lines,
European 1s and crossed 7s, digits touching, overlapping or broken, slanted, unevenly spaced,
then photographed or scanned and saved as JPEG. The line reader never sees such strips in
training (only MNIST and what is made from it may be used), so ``render_strip`` makes them: each
strip draws its own writing, paper, marks and capture from a ``Style``.

Two styles: ``TRAIN_STYLE``, and ``DEV_STYLE``, whose paper patterns and marks the training
never sees (its own texture families, and marks of other shapes), so that a dev set rendered
with it estimates how well reading carries over to paper and punctuation not trained on.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFilter

from training.strips import make_strip


@dataclass(frozen=True)
class Style:
    """What strips a generator makes: shares and ranges drawn from per strip."""

    textures: tuple[str, ...]  # paper pattern families (``_paper``)
    marks: tuple[str, ...]  # non-digit marks (``_mark``)
    mnist_share: float = 0.2  # plain MNIST-made strips (black on white, ``training.strips.make_strip``)
    short_share: float = 0.6  # lengths 1-8 (amounts); the rest 3-30
    empty_share: float = 0.0  # marks alone, no digit
    mark_rate: float = 0.6  # share of strips with marks beside or between the digits
    line_rate: float = 0.3  # share with an underline or a box
    touch_rate: float = 0.3  # share written tightly (digits touching and overlapping)
    european_rate: float = 0.4  # share of writers with hooked 1s and (some) crossed 7s
    jpeg_rate: float = 0.7
    invert_rate: float = 0.05  # light ink on dark paper
    ballpoint_rate: float = 0.0  # share written with a ballpoint (``ballpoint``): strokes far finer than MNIST's
    digit_scale: tuple[float, float] = (0.85, 1.15)  # each digit's size against the row's: writers mix large and small
    tilt_rate: float = 0.0  # share captured askew or written along a drifting line (``tilt``)
    max_tilt: float = 8.0  # degrees, uphill or downhill, drawn uniformly up to this
    extra: dict[str, float] = field(default_factory=dict)


TRAIN_STYLE = Style(
    textures=("plain", "guilloche", "grating", "mesh", "speckle"),
    marks=("dash", "long_dash", "comma", "period", "equals", "euro", "plus"),
    empty_share=0.08,
)
# Unseen paper (rosettes, wood-like noise) and unseen marks (colon, tilde, asterisk).
DEV_STYLE = Style(
    textures=("rosette", "fibres"),
    marks=("colon", "tilde", "asterisk", "dash", "comma", "period"),
    mnist_share=0.0,
)
CONDITIONS = ("clean", "paper", "marks", "touching", "cheque")
# A ballpoint's strokes are traced at this digit height (pixels), where MNIST's are several
# pixels wide: ``ballpoint``.
BALLPOINT_WORK_HEIGHT = 64


def european_habits(raw: np.ndarray, label: int, rng: np.random.Generator) -> np.ndarray:
    """An MNIST digit (28x28 uint8, white on black) as a continental European writer draws it:
    most 1s with a long flag from the top (which is why such a writer crosses some 7s), some 7s
    crossed. Other digits come back as they are. The strip renderer writes these for its
    European writers, and the digit model trains on them (``training.augment.EuropeanDigits``)."""
    if label not in (1, 7):
        return raw
    image = Image.fromarray(raw)
    draw = ImageDraw.Draw(image)
    rows = np.flatnonzero(raw.max(axis=1) > 128)
    cols = np.flatnonzero(raw[rows[0]] > 128) if rows.size else np.array([14])
    top, x = (int(rows[0]), int(cols.mean())) if rows.size else (4, 14)
    width = int(rng.integers(2, 4))
    if label == 1 and rng.random() < 0.85:  # the flag of a European 1
        length = rng.uniform(5, 10)
        angle = rng.uniform(0.5, 1.2)
        draw.line([(x, top), (x - length * np.cos(angle), top + length * np.sin(angle))], fill=255, width=width)
    if label == 7 and rng.random() < 0.5:  # a crossed 7
        middle = top + (rows[-1] - top) * rng.uniform(0.4, 0.6) if rows.size else 14
        centre = np.flatnonzero(raw[int(middle)] > 64)
        cx = float(centre.mean()) if centre.size else 14.0
        half = rng.uniform(4, 7)
        draw.line([(cx - half, middle), (cx + half, middle + rng.uniform(-1, 1))], fill=255, width=width)
    return np.asarray(image)


def _digit_ink(raw: np.ndarray, label: int, rng: np.random.Generator, european: bool) -> np.ndarray:
    """An MNIST digit (28x28 uint8) -> a float ink map with this writer's habits: stroke width,
    a hooked 1 or crossed 7, a stroke broken in two."""
    image = european_habits(raw, label, rng) if european else raw
    ink = np.asarray(image, dtype=np.float32) / 255.0
    if rng.random() < 0.08:  # a stroke broken where the pen skipped
        angle = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[:28, :28]
        distance = (xx - 14) * np.sin(angle) - (yy - 14) * np.cos(angle) - rng.uniform(-5, 5)
        ink = np.where(np.abs(distance) < rng.uniform(0.6, 1.5), 0.0, ink)
    return ink


def _place(ink: np.ndarray, height: float, slant: float, rng: np.random.Generator,
           scale_range: tuple[float, float]) -> np.ndarray:
    """A digit's ink cropped, scaled to ``height`` (the 28-pixel cell's 20-pixel box) times a
    factor drawn from ``scale_range``, slanted."""
    rows, cols = np.flatnonzero(ink.max(axis=1) > 0.1), np.flatnonzero(ink.max(axis=0) > 0.1)
    if rows.size == 0:
        return np.zeros((1, 1), np.float32)
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    scale = height / 20 * rng.uniform(*scale_range)
    h = max(2, round(crop.shape[0] * scale))
    w = max(2, round(crop.shape[1] * scale * rng.uniform(0.8, 1.2)))
    image = Image.fromarray((crop * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR)
    shear = slant + rng.normal(0, 0.05)
    extra = int(abs(shear) * h) + 1
    image = image.transform((w + extra, h), Image.Transform.AFFINE,
                            (1, shear, -extra if shear > 0 else 0, 0, 1, 0), Image.Resampling.BILINEAR)
    angle = rng.normal(0, 3)
    if abs(angle) > 0.5:
        image = image.rotate(angle, Image.Resampling.BILINEAR, expand=True)
    return np.asarray(image, dtype=np.float32) / 255.0


def _mark(kind: str, height: float, width: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A non-digit mark drawn in a box of the row's scale -> (its ink, its top as a share of the
    digit height below the row's top: where it sits vertically)."""
    stroke = max(1, int(round(height * rng.uniform(0.06, 0.12))))
    w = max(4, int(width * rng.uniform(0.3, 0.9)))
    h = int(height * 1.3)
    image = Image.new("L", (w + 2 * stroke, h), 0)
    draw = ImageDraw.Draw(image)
    mid = h * rng.uniform(0.4, 0.6)
    if kind in ("dash", "long_dash"):
        length = w if kind == "dash" else int(w * rng.uniform(1.2, 2.5))
        image = Image.new("L", (length + 2 * stroke, h), 0)
        draw = ImageDraw.Draw(image)
        draw.line([(stroke, mid), (stroke + length, mid + rng.uniform(-2, 2))], fill=255, width=stroke)
    elif kind == "equals":
        gap = height * rng.uniform(0.12, 0.2)
        for y in (mid - gap, mid + gap):
            draw.line([(stroke, y), (stroke + w, y)], fill=255, width=stroke)
    elif kind == "period":
        r = stroke * rng.uniform(0.6, 1.2) + 0.5
        y = height * rng.uniform(0.85, 1.0)
        draw.ellipse([w / 2 - r, y - r, w / 2 + r, y + r], fill=255)
    elif kind == "comma":
        y = height * rng.uniform(0.85, 1.0)
        draw.line([(w / 2 + 1, y), (w / 2 - height * 0.08, y + height * rng.uniform(0.15, 0.3))], fill=255, width=stroke + 1)
    elif kind == "colon":
        r = stroke * 0.8 + 0.5
        for y in (height * 0.4, height * 0.9):
            draw.ellipse([w / 2 - r, y - r, w / 2 + r, y + r], fill=255)
    elif kind == "slash":
        draw.line([(w, height * 0.05), (stroke, height * 0.95)], fill=255, width=stroke)
    elif kind == "plus":
        s = min(w, height * 0.5) / 2
        draw.line([(w / 2 - s, mid), (w / 2 + s, mid)], fill=255, width=stroke)
        draw.line([(w / 2, mid - s), (w / 2, mid + s)], fill=255, width=stroke)
    elif kind == "euro":
        r = height * 0.35
        cx, cy = w / 2 + r / 2, height * 0.5
        draw.arc([cx - r, cy - r, cx + r, cy + r], 50, 310, fill=255, width=stroke)
        for dy in (-r * 0.25, r * 0.25):
            draw.line([(cx - r * 1.3, cy + dy), (cx + r * 0.2, cy + dy)], fill=255, width=max(1, stroke - 1))
    elif kind == "tilde":
        xs = np.linspace(stroke, stroke + w, 12)
        ys = mid + height * 0.08 * np.sin(np.linspace(0, 2 * np.pi, 12))
        draw.line(list(zip(xs, ys)), fill=255, width=stroke)
    elif kind == "asterisk":
        s = height * 0.2
        for a in (0, np.pi / 3, 2 * np.pi / 3):
            draw.line([(w / 2 - s * np.cos(a), height * 0.3 - s * np.sin(a)),
                       (w / 2 + s * np.cos(a), height * 0.3 + s * np.sin(a))], fill=255, width=stroke)
    return np.asarray(image, dtype=np.float32) / 255.0, 0.0


def _paper(kind: str, shape: tuple[int, int], scale: float, rng: np.random.Generator) -> np.ndarray:
    """A pattern in [0, 1] (1 = the pattern's darkest) of one paper family, at the row's scale."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    if kind == "plain":
        return np.zeros(shape, np.float32)
    if kind == "guilloche":  # interlaced sine waves drawn as fine lines
        out = np.zeros(shape, np.float32)
        for _ in range(int(rng.integers(2, 5))):
            period = scale * rng.uniform(0.15, 0.6)
            wave = scale * rng.uniform(0.1, 0.8) * np.sin(xx / (scale * rng.uniform(0.3, 2.0)) + rng.uniform(0, 6.3))
            phase = (yy + wave + xx * rng.uniform(-0.5, 0.5)) / period
            out = np.maximum(out, np.clip(1 - np.abs(phase - np.round(phase)) / rng.uniform(0.08, 0.2), 0, 1))
        return out
    if kind == "grating":  # parallel fine lines at an angle
        angle = rng.uniform(0, np.pi)
        period = scale * rng.uniform(0.08, 0.4)
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) / period
        return (0.5 + 0.5 * np.cos(2 * np.pi * phase)) ** rng.uniform(1, 6)
    if kind == "mesh":
        a, b = _paper("grating", shape, scale, rng), _paper("grating", shape, scale, rng)
        return np.maximum(a, b)
    if kind == "speckle":  # grain and blotches
        small = rng.random((max(2, h // 3), max(2, w // 3))).astype(np.float32)
        grain = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR),
                           dtype=np.float32) / 255
        return np.clip((grain - rng.uniform(0.3, 0.7)) * 3, 0, 1)
    if kind == "rosette":  # concentric rings about a point off the strip
        cx, cy = rng.uniform(-w, 2 * w), rng.uniform(-3 * h, 4 * h)
        period = scale * rng.uniform(0.1, 0.35)
        radius = np.hypot(xx - cx, yy - cy) + scale * 0.3 * np.sin(np.arctan2(yy - cy, xx - cx) * rng.integers(6, 24))
        return (0.5 + 0.5 * np.cos(2 * np.pi * radius / period)) ** 3
    if kind == "fibres":  # long thin streaks, as in recycled or wood-free paper
        out = np.zeros(shape, np.float32)
        image = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(image)
        for _ in range(int(w * h / (scale * scale) * rng.uniform(0.5, 2))):
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            a, length = rng.uniform(0, np.pi), scale * rng.uniform(0.2, 0.8)
            draw.line([(x, y), (x + length * np.cos(a), y + length * np.sin(a))], fill=int(rng.integers(80, 256)), width=1)
        return np.maximum(out, np.asarray(image, np.float32) / 255)
    raise ValueError(f"unknown paper {kind!r}")


@dataclass(frozen=True)
class Rendered:
    image: Image.Image
    labels: list[int]


def render_strip(digits: np.ndarray, labels: np.ndarray, rng: np.random.Generator, style: Style = TRAIN_STYLE,
                 condition: str | None = None) -> Rendered:
    """A row of MNIST digits written, on paper, captured: one strip as the world makes them.

    ``condition`` forces one kind of strip (``CONDITIONS``): "clean" (MNIST-made, black on
    white), "paper" (texture only), "marks" (punctuation and lines on plain paper), "touching"
    (tight writing on plain paper), "cheque" (everything at once); by default each strip draws
    its own mix from ``style``.
    """
    if len(digits) and (condition == "clean" or (condition is None and rng.random() < style.mnist_share)):
        strip = make_strip(digits, labels, rng, max_gap=rng.choice([1 / 3, 0.1]), black_on_white=rng.random() < 0.8)
        return Rendered(strip.image, [int(v) for v in labels])
    forced = condition is not None
    with_paper = condition in ("paper", "cheque") or (not forced and rng.random() < 0.75)
    # A strip with no digit is marks alone (a dash, a comma): what must read as nothing.
    with_marks = not len(digits) or condition in ("marks", "cheque") or (not forced and rng.random() < style.mark_rate)
    touching = condition in ("touching", "cheque") and rng.random() < 0.7 or (not forced and rng.random() < style.touch_rate)
    height = rng.uniform(18, 56)  # digit height in pixels as captured
    european = rng.random() < style.european_rate
    slant = rng.normal(0, 0.18)
    pieces: list[tuple[np.ndarray, float]] = []  # (ink, vertical offset in digit heights)
    gap_low, gap_high = (-0.22, 0.06) if touching else (-0.05, 0.45)
    for raw, label in zip(digits, labels):
        ink = _place(_digit_ink(raw, int(label), rng, european), height, slant, rng, style.digit_scale)
        pieces.append((ink, rng.normal(0, 0.05)))
    marks: list[tuple[int, np.ndarray]] = []  # (insert before piece i, ink)
    if with_marks:
        for _ in range(int(rng.integers(1, 4))):
            kind = str(rng.choice(style.marks))
            where = int(rng.choice([0, len(pieces)])) if kind in ("dash", "long_dash", "equals", "asterisk", "slash", "euro") \
                and rng.random() < 0.7 else int(rng.integers(min(1, len(pieces)), len(pieces) + 1))
            marks.append((where, _mark(kind, height, height * 0.7, rng)[0]))
    # Lay out left to right on a tall enough canvas.
    items: list[tuple[np.ndarray, float, bool]] = []
    for i, (ink, offset) in enumerate(pieces):
        items += [(m, 0.0, False) for where, m in marks if where == i]
        items.append((ink, offset, True))
    items += [(m, 0.0, False) for where, m in marks if where == len(pieces)]
    margin_x = [int(height * rng.uniform(0.1, 1.0)) for _ in range(2)]
    margin_y = [int(height * rng.uniform(0.1, 0.8)) for _ in range(2)]
    canvas_h = int(height * 1.6) + sum(margin_y) + 8
    positions, x = [], margin_x[0]
    for ink, offset, is_digit in items:
        positions.append(x)
        step = rng.uniform(gap_low, gap_high) * height if is_digit else rng.uniform(0.0, 0.3) * height
        x += ink.shape[1] + int(step)
    canvas_w = max(x, max(p + ink.shape[1] for p, (ink, _, _) in zip(positions, items))) + margin_x[1]
    ink_map = np.zeros((canvas_h, canvas_w), np.float32)
    baseline = margin_y[0] + height * 0.25
    for x, (ink, offset, is_digit) in zip(positions, items):
        top = int(baseline + offset * height + (height * 1.1 - ink.shape[0] if is_digit else 0) * (0.5 if is_digit else 0))
        top = min(max(0, top), canvas_h - ink.shape[0])
        region = ink_map[top : top + ink.shape[0], x : x + ink.shape[1]]
        np.maximum(region, ink[: region.shape[0], : region.shape[1]], out=region)
    if with_marks and rng.random() < style.line_rate / max(style.mark_rate, 1e-6):
        _rule(ink_map, baseline, height, rng)
    # One pen per strip: a ballpoint, or else broad, fine, or as MNIST's.
    if style.ballpoint_rate and rng.random() < style.ballpoint_rate:
        ink_map = ballpoint(ink_map, height, rng)
    else:
        pen = rng.random()
        if pen < 0.25 or (pen < 0.5 and height >= 30):
            size = 3 if height < 40 else 5
            pen_filter = ImageFilter.MaxFilter(size) if pen < 0.25 else ImageFilter.MinFilter(3)
            ink_map = np.asarray(Image.fromarray((ink_map * 255).astype(np.uint8)).filter(pen_filter), np.float32) / 255.0
    # Paper, ink colour, capture.
    paper_level = rng.uniform(0.7, 1.0)
    gray = np.full(ink_map.shape, paper_level, np.float32)
    texture_depth = rng.uniform(0.08, 0.35) if with_paper else 0.0
    if with_paper:
        texture = _paper(str(rng.choice(style.textures)), ink_map.shape, height, rng)
        gray -= texture * texture_depth * paper_level
    # The ink stands out from the darkest of the paper pattern, as a pen's does.
    ink_level = rng.uniform(0.0, max(0.05, paper_level * (1 - texture_depth) - 0.3))
    opacity = ink_map * rng.uniform(0.75, 1.0)
    gray = gray * (1 - opacity) + ink_level * opacity
    if rng.random() < 0.5:  # uneven light
        gy, gx = np.mgrid[:canvas_h, :canvas_w].astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (gx * np.cos(angle) + gy * np.sin(angle)) / max(canvas_w, canvas_h)
        gray *= 1 - rng.uniform(0, 0.3) * (ramp - ramp.min())
    if rng.random() < 0.5:
        gray += rng.normal(0, rng.uniform(0.01, 0.05), gray.shape).astype(np.float32)
    image = Image.fromarray((np.clip(gray, 0, 1) * 255).astype(np.uint8))
    if style.tilt_rate and rng.random() < style.tilt_rate:
        image = tilt(image, rng.uniform(-style.max_tilt, style.max_tilt))
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    if rng.random() < 0.4:  # captured at another resolution
        factor = rng.uniform(0.6, 1.6)
        image = image.resize((max(8, int(image.width * factor)), max(8, int(image.height * factor))), Image.Resampling.BILINEAR)
    if rng.random() < style.invert_rate:
        image = Image.fromarray(255 - np.asarray(image))
    if rng.random() < style.jpeg_rate:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(rng.integers(30, 95)))
        image = Image.open(io.BytesIO(buffer.getvalue()))
        image.load()
    return Rendered(image, [int(v) for v in labels])


def ballpoint(ink_map: np.ndarray, height: float, rng: np.random.Generator) -> np.ndarray:
    """The strokes redrawn with a ballpoint, 3-7% of the digit height wide, as amounts on cheques
    are written; MNIST's felt pen is about 12% (a thinner MNIST stroke, by erosion, breaks
    before it gets that fine).

    The ink is enlarged until a digit is ``BALLPOINT_WORK_HEIGHT`` pixels tall, its strokes
    (where the ink is at least half its full strength) thinned there to their centre lines
    (``_centre_lines``), drawn along them with the pen, and reduced again by averaging, as a
    scanner does. Thinned at the strip's own size (digits 18-56 pixels, strokes 2-6 wide), the
    centre lines came out jagged and broken; taken from fainter ink, the small loops of a thick
    6, 8 or 9 filled in before they thinned, leaving a stroke that reads as another digit."""
    factor = max(1.0, BALLPOINT_WORK_HEIGHT / height)
    rows, cols = ink_map.shape
    enlarged = Image.fromarray((ink_map * 255).astype(np.uint8)).resize(
        (round(cols * factor), round(rows * factor)), Image.Resampling.BILINEAR)
    centre = torch.from_numpy(_centre_lines(np.asarray(enlarged) > 127).astype(np.uint8) * 255)
    pen = round(height * rng.uniform(0.03, 0.07) * factor) | 1  # a square pen: the maximum over pen x pen
    drawn = F.max_pool2d(centre[None, None].float(), pen, 1, pen // 2)[0, 0].numpy().astype(np.uint8)
    return np.asarray(Image.fromarray(drawn).resize((cols, rows), Image.Resampling.BOX), np.float32) / 255.0


def _centre_lines(strokes: np.ndarray) -> np.ndarray:
    """A binary image's strokes thinned to one-pixel centre lines, their connectivity kept:
    Zhang and Suen's parallel thinning (1984), each sub-iteration on the whole image at once."""
    image = np.pad(strokes.astype(np.uint8), 1)
    changed = True
    while changed:
        changed = False
        for first in (True, False):
            p2, p3, p4, p5 = image[:-2, 1:-1], image[:-2, 2:], image[1:-1, 2:], image[2:, 2:]
            p6, p7, p8, p9 = image[2:, 1:-1], image[2:, :-2], image[1:-1, :-2], image[:-2, :-2]
            ring = (p2, p3, p4, p5, p6, p7, p8, p9, p2)
            neighbours = sum(p.astype(np.int8) for p in ring[:8])
            crossings = sum(((a == 0) & (b == 1)).astype(np.int8) for a, b in zip(ring, ring[1:]))
            if first:
                open_side = (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
            else:
                open_side = (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
            remove = (image[1:-1, 1:-1] == 1) & (neighbours >= 2) & (neighbours <= 6) & (crossings == 1) & open_side
            if remove.any():
                image = image.copy()
                image[1:-1, 1:-1][remove] = 0
                changed = True
    return image[1:-1, 1:-1].astype(bool)


def _rule(ink_map: np.ndarray, baseline: float, height: float, rng: np.random.Generator) -> None:
    """An underline below the digits, or a box around them, drawn into ``ink_map``."""
    h, w = ink_map.shape
    image = Image.fromarray((ink_map * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    width = max(1, int(height * rng.uniform(0.03, 0.08)))
    level = int(rng.integers(120, 256))
    below = min(h - 2, baseline + height * rng.uniform(1.15, 1.4))
    x0, x1 = rng.uniform(0, 0.2) * w, w - rng.uniform(0, 0.2) * w
    if rng.random() < 0.65:
        draw.line([(x0, below), (x1, below + rng.uniform(-2, 2))], fill=level, width=width)
    else:
        above = max(1, baseline - height * rng.uniform(0.2, 0.4))
        draw.rectangle([x0, above, x1, below], outline=level, width=width)
    ink_map[:] = np.asarray(image, dtype=np.float32) / 255.0


def tilt(image: Image.Image, degrees: float) -> Image.Image:
    """A strip as if photographed askew, or written along a line that runs uphill (positive
    ``degrees``: counter-clockwise) or downhill: rotated whole, the corners filled with its paper
    (the median of its border)."""
    gray = image.convert("L")
    pixels = np.asarray(gray)
    paper = int(np.median(np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])))
    return gray.rotate(degrees, Image.Resampling.BILINEAR, expand=True, fillcolor=paper)


def tilt_in_turn(images: list[Image.Image], degrees: float) -> list[Image.Image]:
    """Each image tilted by ``degrees``, downhill and uphill in turn (``tilt``)."""
    return [tilt(image, degrees if i % 2 else -degrees) for i, image in enumerate(images)]


def draw_length(rng: np.random.Generator, style: Style) -> int:
    """No digit (marks alone) for ``style.empty_share`` of the strips, amounts (1-8 digits) for
    ``style.short_share``, else 3-30 digits."""
    draw = rng.random()
    if draw < style.empty_share:
        return 0
    return int(rng.integers(1, 9)) if draw < style.empty_share + style.short_share else int(rng.integers(3, 31))


@dataclass(frozen=True)
class StripSet:
    """Rendered strips kept for evaluation: their images (as uploaded) and truths."""

    name: str
    images: list[Any]
    labels: list[list[int]]


def render_set(name: str, split: Any, indices: np.ndarray, count: int, seed: int, style: Style,
               condition: str | None = None, lengths: str = "mixed") -> StripSet:
    """``count`` strips of ``split[indices]``, the same for the same seed."""
    rng = np.random.default_rng(seed)
    images, truths = [], []
    for _ in range(count):
        if lengths == "uniform":
            length = int(rng.integers(3, 31))
        elif lengths == "study":
            length = int(np.clip(np.rint(rng.normal(10, 3)), 3, 30))
        else:
            length = draw_length(rng, style)
        pick = indices[rng.integers(0, len(indices), length)]
        if condition == "mnist":
            strip = make_strip(split.images[pick], split.labels[pick], rng)
        else:
            strip = render_strip(split.images[pick], split.labels[pick], rng, style, condition)
        images.append(strip.image)
        truths.append([int(v) for v in split.labels[pick]])
    return StripSet(name, images, truths)
