"""The strip reader's side of the one preprocessing, and how its output is read.

A strip (a row of handwritten digits, with whatever else is on the paper: texture, a dash, a
comma, an underline) is not cut into digits. It becomes one *line image*, the whole row at a
fixed height, and the line reader (``model.architectures.LineReader``, a CNN-BiLSTM trained with
CTC) emits, for every few columns, the probability of each digit or of "no digit here" (the CTC
blank). Reading the digits is then a matter of taking the likeliest symbol per column and
collapsing runs (``decode``); nothing decides where one digit ends by rule. ``read_lines`` reads
each line at its own width, and a line it is unsure of (a digit below ``SURE``) at a few more
(``VIEWS``), keeping the reading they find likeliest together (``best_reading``).

``strip_to_line`` is used by training (on rendered strips) and by serving (on uploads) alike:

1. ``to_gray`` and ``to_ink`` (``model.preprocess``): polarity from the border, background
   level removed, MNIST polarity (ink high).
2. level the writing when it runs uphill or downhill (``baseline``): a strip photographed
   askew, or a writer whose line drifts, would otherwise reach the network as a taller line of
   smaller digits at varying heights, which it never saw in training;
3. crop to the ink that stands out (``crop_level``), at least ``min_strokes`` stroke widths
   tall (so a mark alone keeps its size against the pen that wrote it), with a margin of a
   tenth of its height;
4. scale to ``height`` rows, aspect kept, and pad to at least ``min_width`` columns.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image

from model.preprocess import BLANK, DEFAULT_CONFIG, NoInkError, PreprocessConfig, resize_ink, to_gray, to_ink

BLANK_CLASS = 10  # the CTC blank; digits are their own class index 0..9


@dataclass(frozen=True)
class LineConfig:
    """Parameters of the line image; stored in the line reader's checkpoint."""

    height: int = 32
    # ``to_ink``'s parameters: paper texture below this share of the ink range is background,
    # and an image with less contrast than ``min_contrast`` is blank.
    noise_floor: float = DEFAULT_CONFIG.noise_floor
    min_contrast: float = DEFAULT_CONFIG.min_contrast
    # Ink below this level (after ``to_ink``) does not count when cropping to the writing.
    crop_level: float = 0.35
    # Margin kept around the crop, as a share of its height.
    margin: float = 0.1
    # A line whose writing drifts up or down by more than this share of its height, from one
    # end to the other, is rotated level (``baseline``); below it, it is left as written. So is
    # a fitted tilt over ``max_tilt`` degrees: that is not a strip held askew but marks (a long
    # dash beside a digit or two) that the fit took for a line.
    max_drift: float = 0.2
    max_tilt: float = 10.0
    # The crop is at least this many stroke widths tall: a line's height is that of the
    # writing, and a comma or a dot alone is far shorter than any digit its pen would write.
    min_strokes: float = 5.0
    # Lines are padded to at least this many columns (a lone "1" still spans several CTC steps)
    # and scaled down to at most ``max_width`` (a strip of ``max_width / height`` digit heights).
    min_width: int = 32
    max_width: int = 2400
    # Input normalisation of the network.
    mean: float = 0.1
    std: float = 0.3
    # The CNN's horizontal downsampling: one CTC step per this many columns.
    stride: int = 4

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, float | int]) -> LineConfig:
        return cls(**data)

    @property
    def ink(self) -> PreprocessConfig:
        """The ``to_ink`` step's parameters."""
        return PreprocessConfig(noise_floor=self.noise_floor, min_contrast=self.min_contrast)


DEFAULT_LINE = LineConfig()


@dataclass(frozen=True)
class Line:
    """A strip as the line reader sees it: ``pixels`` [height, width] in [0, 1], and where they
    came from: ``left`` + column * ``scale`` is the source image's column, ``top`` + row * ``scale``
    its row."""

    pixels: np.ndarray
    left: float
    scale: float
    top: float = 0.0
    # The line was read from the source rotated by ``angle`` degrees (counter-clockwise, as
    # Pillow's ``rotate``) about ``centre``, which the rotation moved to ``rotated_centre``.
    angle: float = 0.0
    centre: tuple[float, float] = (0.0, 0.0)
    rotated_centre: tuple[float, float] = (0.0, 0.0)

    def to_source(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """A box in the levelled image -> the smallest upright box holding it in the source."""
        if not self.angle:
            return box
        theta = np.radians(self.angle)
        (cx, cy), (rx, ry) = self.centre, self.rotated_centre
        left, top, right, bottom = box
        xs = np.array([left, right, right, left]) - rx
        ys = np.array([top, top, bottom, bottom]) - ry
        source_x = cx + np.cos(theta) * xs - np.sin(theta) * ys
        source_y = cy + np.sin(theta) * xs + np.cos(theta) * ys
        return float(source_x.min()), float(source_y.min()), float(source_x.max()), float(source_y.max())

    def boxes(self, reading: Reading, level: float = DEFAULT_LINE.crop_level) -> list[tuple[float, float, float, float]]:
        """Each digit read, as a box (left, top, right, bottom) in source pixels, over the line's
        rows (a levelled line's boxes are the upright boxes around its rotated ones).

        CTC marks a digit at the few steps where its symbol wins, somewhere over the digit, not
        over its extent. So its columns come from the ink: they run from the emptiest column
        between its steps and the previous digit's to the emptiest between its steps and the
        next one's (at either end of the line, the emptiest within a line height, the nearest
        to the digit), and are then tightened to the columns holding ink above ``level``."""
        height, width = self.pixels.shape
        ink = self.pixels.sum(axis=0)
        strong = (self.pixels > level).any(axis=0)
        runs = [(first, last + 1) for first, last in reading.spans]

        def emptiest(lo: int, hi: int, nearest_last: bool) -> int:
            lo, hi = max(0, lo), min(width, hi)
            if hi <= lo:
                return lo
            window = ink[lo:hi]
            least = np.flatnonzero(window <= window.min())
            return lo + int(least[-1] if nearest_last else least[0])

        cuts = [emptiest(runs[0][0] - height, runs[0][0] + 1, True)] if runs else []
        cuts += [emptiest(a[1], b[0], True) for a, b in zip(runs, runs[1:])]
        cuts += [emptiest(runs[-1][1] - 1, runs[-1][1] + height, False) + 1] if runs else []
        out = []
        for first, last in zip(cuts, cuts[1:]):
            columns = np.flatnonzero(strong[first:last])
            if columns.size:
                first, last = first + int(columns[0]), first + int(columns[-1]) + 1
            out.append(self.to_source((self.left + first * self.scale, self.top,
                                       self.left + last * self.scale, self.top + height * self.scale)))
        return out


def strip_to_line(image: Image.Image | np.ndarray, config: LineConfig = DEFAULT_LINE) -> Line:
    """A strip image (PIL image, or grayscale array in [0, 1]) -> its line image.

    Raises ``NoInkError`` when nothing stands out from the background."""
    gray = to_gray(image) if isinstance(image, Image.Image) else np.asarray(image, dtype=np.float32)
    ink = to_ink(gray, config.ink)
    strong = ink > config.crop_level
    if not strong.any():
        raise NoInkError(BLANK)
    slope, drift = baseline(strong)
    angle, centre, rotated_centre = 0.0, (0.0, 0.0), (0.0, 0.0)
    tilt = float(np.degrees(np.arctan(slope)))
    if drift > config.max_drift and abs(tilt) <= config.max_tilt:
        angle = tilt
        centre = (ink.shape[1] / 2, ink.shape[0] / 2)
        ink = np.asarray(Image.fromarray(ink, mode="F").rotate(angle, Image.Resampling.BILINEAR, expand=True))
        rotated_centre = (ink.shape[1] / 2, ink.shape[0] / 2)
        strong = ink > config.crop_level
    rows, cols = np.flatnonzero(strong.any(axis=1)), np.flatnonzero(strong.any(axis=0))
    first, last = int(rows[0]), int(rows[-1]) + 1
    pen = stroke_width(strong[first:last, cols[0] : cols[-1] + 1])
    tall = max(last - first, int(np.ceil(config.min_strokes * pen)))
    pad = max(1, round(config.margin * tall))
    if tall > last - first:  # too short for its pen to be writing digits: keep the height it would have
        first -= (tall - (last - first)) // 2
        top, bottom = first - pad, first + tall + pad
    else:
        top, bottom = max(0, first - pad), min(ink.shape[0], last + pad)
    left, right = max(0, cols[0] - pad), min(ink.shape[1], cols[-1] + 1 + pad)
    crop = ink[max(0, top) : min(ink.shape[0], bottom), left:right]
    crop = np.pad(crop, ((max(0, -top), max(0, bottom - ink.shape[0])), (0, 0)))
    scale = config.height / crop.shape[0]
    width = min(config.max_width, max(1, round(crop.shape[1] * scale)))
    pixels = np.clip(resize_ink(crop, width, config.height), 0.0, 1.0)
    if width < config.min_width:
        before = (config.min_width - width) // 2
        pixels = np.pad(pixels, ((0, 0), (before, config.min_width - width - before)))
        left -= before * crop.shape[1] / width
    return Line(pixels.astype(np.float32), float(left), crop.shape[1] / width, float(top), angle, centre, rotated_centre)


def baseline(strong: np.ndarray) -> tuple[float, float]:
    """The slope (rows per column) of the line the writing runs along, and how far it drifts
    from one end of the writing to the other, in writing heights.

    The writing is cut into chunks about as wide as it is tall (the height is the 90th
    percentile of the columns' ink extents: a column of a tilted line still spans one digit),
    and a line is fitted through the chunks' centres of ink, each weighted by its ink. A chunk's
    centre does not depend on the slant or shape of the digit in it, as a fit through all the
    ink would. Under three chunks (a digit or two) there is no line to fit: slope 0.
    """
    cols = np.flatnonzero(strong.any(axis=0))
    first = strong.argmax(axis=0)
    last = strong.shape[0] - 1 - strong[::-1].argmax(axis=0)
    height = max(float(np.quantile((last - first + 1)[cols], 0.9)), 1.0)
    start, stop = int(cols[0]), int(cols[-1]) + 1
    chunks = int((stop - start) // height)
    if chunks < 3:
        return 0.0, 0.0
    rows = np.arange(strong.shape[0], dtype=np.float64)
    mass = strong.sum(axis=0).astype(np.float64)
    row_sums = (strong * rows[:, None]).sum(axis=0)
    edges = np.linspace(start, stop, chunks + 1).round().astype(int)
    centres, weights = [], []
    for a, b in zip(edges, edges[1:]):
        weight = mass[a:b].sum()
        if weight > 0:
            x = float((mass[a:b] * np.arange(a, b)).sum() / weight)
            centres.append((x, float(row_sums[a:b].sum() / weight)))
            weights.append(weight)
    if len(centres) < 3:
        return 0.0, 0.0
    x, y = np.array(centres).T
    w = np.array(weights)
    x0, y0 = np.average(x, weights=w), np.average(y, weights=w)
    slope = float(np.sum(w * (x - x0) * (y - y0)) / np.sum(w * (x - x0) ** 2))
    return slope, abs(slope) * (stop - start) / height


def stroke_width(strokes: np.ndarray) -> float:
    """The pen's width in pixels, from a binary image of its strokes: twice the area over the
    boundary (a stroke of length L and width w has area L w and about 2 L boundary pixels)."""
    inside = np.pad(strokes, 1)
    interior = inside[1:-1, 1:-1] & inside[:-2, 1:-1] & inside[2:, 1:-1] & inside[1:-1, :-2] & inside[1:-1, 2:]
    boundary = int(strokes.sum() - interior.sum())
    return 2.0 * float(strokes.sum()) / max(boundary, 1)


def batch_lines(lines: list[np.ndarray], config: LineConfig = DEFAULT_LINE) -> tuple[torch.Tensor, torch.Tensor]:
    """Line images of any widths -> (the network's input [N, 1, height, max width], zero padded
    on the right, normalised; the widths [N])."""
    widths = torch.tensor([line.shape[1] for line in lines], dtype=torch.int64)
    batch = torch.full((len(lines), 1, config.height, int(widths.max())), -config.mean / config.std)
    for i, line in enumerate(lines):
        batch[i, 0, :, : line.shape[1]] = (torch.from_numpy(line) - config.mean) / config.std
    return batch, widths


def steps_for(widths: torch.Tensor, config: LineConfig = DEFAULT_LINE) -> torch.Tensor:
    """How many CTC steps the network gives a line of each width."""
    return torch.div(widths, config.stride, rounding_mode="floor").clamp(min=1)


@dataclass(frozen=True)
class Reading:
    """What the line reader read in one line: the digits, each with its probability and the
    line columns [first, last] its CTC steps cover, and P(the line holds a 4)."""

    labels: list[int]
    probabilities: list[float]
    spans: list[tuple[int, int]]
    contains_4: float


def decode(probabilities: np.ndarray, stride: int = DEFAULT_LINE.stride) -> Reading:
    """One line's per-step probabilities [T, 11] -> its reading (best-path CTC decoding).

    Each step's likeliest symbol is taken and runs of one symbol collapsed; blanks separate
    digits (so "3 blank 3" is two threes). A digit's probability is the highest its symbol
    reaches over its run. P(contains a 4) is exact under the model's independence of steps: a
    path holds a 4 iff some step emits one, so P = 1 - prod_t (1 - p_t(4)).
    """
    best = probabilities.argmax(axis=1)
    labels: list[int] = []
    confidences: list[float] = []
    spans: list[tuple[int, int]] = []
    previous = BLANK_CLASS
    for step, symbol in enumerate(best):
        symbol = int(symbol)
        if symbol != BLANK_CLASS:
            if symbol != previous:
                labels.append(symbol)
                confidences.append(float(probabilities[step, symbol]))
                spans.append((step * stride, step * stride + stride - 1))
            else:
                confidences[-1] = max(confidences[-1], float(probabilities[step, symbol]))
                spans[-1] = (spans[-1][0], step * stride + stride - 1)
        previous = symbol
    no_four = float(np.exp(np.log1p(-np.clip(probabilities[:, 4], 0.0, 1.0 - 1e-7)).sum()))
    return Reading(labels, confidences, spans, 1.0 - no_four)


# The widths a line is read at, as factors of its own: the line itself first, then squeezed and
# stretched (those two only for a line read unsurely at the first, ``SURE``). Handwriting is
# narrower or wider than the strips the reader learnt from, and a digit the network misreads at
# one width it often reads right at another; the reading that the views together find likeliest
# wins (``best_reading``).
VIEWS: tuple[float, ...] = (1.0, 0.85, 1.15)


def stretch(line: np.ndarray, factor: float, config: LineConfig = DEFAULT_LINE) -> np.ndarray:
    """A line image resized in width by ``factor`` (within ``min_width``..``max_width``)."""
    width = min(config.max_width, max(config.min_width, round(line.shape[1] * factor)))
    if width == line.shape[1]:
        return line
    return np.clip(resize_ink(line, width, config.height), 0.0, 1.0)


def best_reading(log_probabilities: list[torch.Tensor], scales: list[float], stride: int = DEFAULT_LINE.stride) -> Reading:
    """The views of one line (their per-step log-probabilities [T_v, 11], and each view's
    columns per line column) -> the reading they agree on best.

    Each view proposes its best-path reading; every distinct proposal is scored on every view
    by its CTC likelihood (the probability of all the paths that spell it, not just the best
    one), and the proposal with the highest product wins. Its spans and probabilities come from
    the first view that proposed it, its columns mapped back to the line's."""
    readings = [decode(lp.exp().numpy(), stride) for lp in log_probabilities]
    proposals: list[list[int]] = []
    for reading in readings:
        if reading.labels not in proposals:
            proposals.append(reading.labels)
    if len(proposals) > 1:
        nll = torch.zeros(len(proposals))
        for lp in log_probabilities:
            nll += sequence_nll(lp, proposals)
        winner = proposals[int(nll.argmin())]
    else:
        winner = proposals[0]
    view = next(v for v, reading in enumerate(readings) if reading.labels == winner)
    return in_line_columns(readings[view], scales[view])


def in_line_columns(reading: Reading, scale: float) -> Reading:
    """A view's reading with its spans mapped back to the line's columns (the view has ``scale``
    columns per line column)."""
    spans = [(int(first / scale), int((last + 1) / scale) - 1) for first, last in reading.spans]
    return Reading(reading.labels, reading.probabilities, spans, reading.contains_4)


def sequence_nll(log_probabilities: torch.Tensor, sequences: list[list[int]]) -> torch.Tensor:
    """-log P(sequence | one line's steps [T, 11]) under CTC, for each sequence ([len(sequences)];
    infinite for a sequence too long for the steps)."""
    steps = log_probabilities.shape[0]
    targets = torch.tensor([digit for sequence in sequences for digit in sequence], dtype=torch.long)
    return torch.nn.functional.ctc_loss(
        log_probabilities[:, None, :].expand(steps, len(sequences), -1), targets,
        torch.full((len(sequences),), steps, dtype=torch.long), torch.tensor([len(s) for s in sequences], dtype=torch.long),
        blank=BLANK_CLASS, reduction="none")


# A line whose least sure digit at its first view reaches this probability is read at that view
# alone; the others are read only for the rest. Most lines are sure at their own width, and for
# them the other views almost never change the reading (docs/strip-reading.md measures both).
SURE: float = 0.99


@torch.inference_mode()
def forward_lines(model: torch.nn.Module, lines: list[np.ndarray], device: torch.device | str = "cpu",
                  config: LineConfig = DEFAULT_LINE) -> list[torch.Tensor]:
    """One forward pass over line images of any widths -> each line's log-probabilities [T, 11]."""
    batch, widths = batch_lines(lines, config)
    steps = steps_for(widths, config)
    log_probabilities = model(batch.to(device), steps).float().cpu()
    return [log_probabilities[i, : int(steps[i])] for i in range(len(lines))]


@torch.inference_mode()
def read_lines(model: torch.nn.Module, lines: list[np.ndarray], device: torch.device | str = "cpu",
               config: LineConfig = DEFAULT_LINE, views: tuple[float, ...] = VIEWS, sure: float = SURE) -> list[Reading]:
    """Line images of any widths -> their readings. Every line is read at the first of ``views``;
    a line with a digit below ``sure`` (or none at all) is read at the others too, in a second
    pass over those lines alone, and its views vote (``best_reading``)."""
    first = [stretch(line, views[0], config) for line in lines]
    own = forward_lines(model, first, device, config)
    readings = [in_line_columns(decode(lp.exp().numpy(), config.stride), view.shape[1] / line.shape[1])
                for lp, view, line in zip(own, first, lines)]
    unsure = [i for i, reading in enumerate(readings) if min(reading.probabilities, default=0.0) < sure]
    others = [stretch(lines[i], factor, config) for i in unsure for factor in views[1:]]  # per unsure line, its views
    if others:
        second = forward_lines(model, others, device, config)
        per_line = len(views) - 1
        for k, i in enumerate(unsure):
            mine = slice(k * per_line, (k + 1) * per_line)
            scales = [view.shape[1] / lines[i].shape[1] for view in (first[i], *others[mine])]
            readings[i] = best_reading([own[i], *second[mine]], scales, config.stride)
    return readings
