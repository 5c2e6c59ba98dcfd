"""Augmentation applied to a whole batch at once, a different random transform per image.

torchvision's ``RandomAffine`` draws one transform per call, so per-image transforms would mean a
Python loop over 128 images per step: on two CPU cores that costs as much as the network. One
``affine_grid`` + ``grid_sample`` call transforms the batch on whatever device it lives on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from model.preprocess import DEFAULT_CONFIG, NoInkError, PreprocessConfig, normalise, preprocess_digit
from training.render import european_habits


def mirror(images: torch.Tensor, generator: torch.Generator | None = None, share: float = 0.5) -> torch.Tensor:
    """Images [N, C, H, W] with a random ``share`` of them flipped left to right."""
    n = images.shape[0]
    mirrored = (torch.rand(n, generator=generator) < share).to(images.device).view(n, 1, 1, 1)
    return torch.where(mirrored, images.flip(-1), images)


@dataclass(frozen=True)
class AffineAugment:
    degrees: float = 12.0
    scale: tuple[float, float] = (0.88, 1.12)
    shear_degrees: float = 8.0
    translate: float = 0.09  # share of the image side

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images [N, C, H, W] (normalised; the fill is their minimum, the background) -> same shape."""
        n = images.shape[0]
        device, dtype = images.device, images.dtype

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(n, generator=generator).mul(high - low).add(low).to(device, dtype)

        angle = uniform(-self.degrees, self.degrees) * (math.pi / 180)
        shear = uniform(-self.shear_degrees, self.shear_degrees) * (math.pi / 180)
        scale = uniform(*self.scale)
        tx = uniform(-self.translate, self.translate) * 2  # grid coordinates span [-1, 1]
        ty = uniform(-self.translate, self.translate) * 2
        cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
        # Inverse map (output -> input coordinates): rotation then shear, divided by scale.
        theta = torch.stack(
            [
                torch.stack([cos, -sin + cos * tan, tx], dim=-1),
                torch.stack([sin, cos + sin * tan, ty], dim=-1),
            ],
            dim=1,
        ) / torch.stack([scale, scale, torch.ones_like(scale)], dim=-1).unsqueeze(1)
        theta[:, :, 2] = torch.stack([tx, ty], dim=-1)
        background = images.amin(dim=(1, 2, 3), keepdim=True)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        shifted = F.grid_sample(images - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return shifted + background


@dataclass(frozen=True)
class WritingAugment:
    """How other pens, scanners and screens write a digit, then ``AffineAugment``'s pose.

    MNIST strokes are thin, grey-edged and drawn at about 20 pixels; people send thick felt-pen
    and paint-program strokes, 16x16 binary scans, thumbnails. Per image, independently: the
    stroke thickened (a 3x3 or 5x5 maximum, blended by a random weight) or thinned (a 3x3 minimum),
    the digit reduced to 8-16 pixels and enlarged again (detail lost as in a low-resolution scan),
    and the ink thresholded to black and white (a binary scan). Each runs on the ink in [0, 1]
    (the normalised input undone and redone with ``mean`` and ``std``), batched.

    ``broken`` (off by default) breaks a stroke first, as a pen that skips or a light stroke
    lost to a scanner's threshold does: a short band 1.5-3 pixels wide, at a random angle,
    centred on a point of the ink (drawn in proportion to the ink), is erased. Writers' digits
    often arrive in two pieces; MNIST's seldom do.
    """

    thicken: float = 0.35  # share of images whose strokes get thicker
    thin: float = 0.1  # share whose strokes get thinner (among those not thickened)
    low_resolution: float = 0.2
    binary: float = 0.2
    broken: float = 0.0  # share with one stroke broken (a short gap erased across it)
    mean: float = 0.1307
    std: float = 0.3081
    affine: AffineAugment = AffineAugment()

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n, _, height, width = images.shape
        device = images.device

        def chosen(share: float) -> torch.Tensor:
            return (torch.rand(n, generator=generator) < share).to(device).view(n, 1, 1, 1)

        def weight() -> torch.Tensor:
            return torch.rand(n, generator=generator).to(device, images.dtype).view(n, 1, 1, 1)

        ink = images * self.std + self.mean
        if self.broken:
            ink = torch.where(chosen(self.broken), ink * ~self._gaps(ink, generator), ink)
        wide = torch.rand(n, generator=generator).to(device).view(n, 1, 1, 1) < 0.3
        dilated = torch.where(wide, F.max_pool2d(ink, 5, 1, 2), F.max_pool2d(ink, 3, 1, 1))
        thick = chosen(self.thicken)
        ink = torch.where(thick, ink + weight().add(0.5).clamp(max=1) * (dilated - ink), ink)
        eroded = -F.max_pool2d(-ink, 3, 1, 1)
        ink = torch.where(chosen(self.thin) & ~thick, ink + weight() * (eroded - ink), ink)

        side = int(torch.randint(8, 17, (1,), generator=generator))  # one size per batch: one resize call
        low = F.interpolate(F.interpolate(ink, size=(side * height // 20, side * width // 20), mode="area"),
                            size=(height, width), mode="bilinear", align_corners=False)
        ink = torch.where(chosen(self.low_resolution), low, ink)
        ink = torch.where(chosen(self.binary), (ink > 0.4).to(ink.dtype), ink)
        return self.affine((ink - self.mean) / self.std, generator)

    @staticmethod
    def _gaps(ink: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """[N, 1, H, W] bool: per image, a band 1.5-3 px wide and 4-9 px long at a random angle,
        centred on an ink pixel drawn in proportion to the ink."""
        n, _, height, width = ink.shape
        weights = ink.reshape(n, -1).float().cpu().clamp(min=0) + 1e-6
        centre = torch.multinomial(weights, 1, generator=generator).view(n)
        cy, cx = (centre // width).float(), (centre % width).float()
        angle = torch.rand(n, generator=generator) * math.pi
        half_width = 0.75 + torch.rand(n, generator=generator) * 0.75
        half_length = 2.0 + torch.rand(n, generator=generator) * 2.5
        ys = torch.arange(height, dtype=torch.float32).view(1, height, 1) - cy.view(n, 1, 1)
        xs = torch.arange(width, dtype=torch.float32).view(1, 1, width) - cx.view(n, 1, 1)
        cos, sin = torch.cos(angle).view(n, 1, 1), torch.sin(angle).view(n, 1, 1)
        across, along = (xs * sin - ys * cos).abs(), (xs * cos + ys * sin).abs()
        band = (across <= half_width.view(n, 1, 1)) & (along <= half_length.view(n, 1, 1))
        return band.unsqueeze(1).to(ink.device)


@dataclass(frozen=True)
class GarmentAugment:
    """Fashion-MNIST augmentation, batched: a left-right mirror (garments, shoes and bags are
    as plausible mirrored; digits are not), a shift of a pixel or two and a slight rescale (the
    preprocessing already fixes scale and position, and garments are photographed upright, so
    no rotation or shear), and random erasing of one rectangle, which makes the network use the
    whole garment rather than one telling patch."""

    flip: float = 0.5
    affine: AffineAugment = AffineAugment(degrees=0.0, scale=(0.95, 1.05), shear_degrees=0.0, translate=0.06)
    erase: float = 0.5  # probability of erasing a rectangle
    erase_area: tuple[float, float] = (0.02, 0.12)  # share of the image it covers

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n, _, height, width = images.shape
        device = images.device
        images = self.affine(mirror(images, generator, self.flip), generator)
        # One rectangle per image (aspect 1/2..2), filled with the background level.
        area = torch.empty(n).uniform_(*self.erase_area, generator=generator) * height * width
        aspect = torch.exp(torch.empty(n).uniform_(math.log(0.5), math.log(2.0), generator=generator))
        h = (area * aspect).sqrt().clamp(1, height).long()
        w = (area / aspect).sqrt().clamp(1, width).long()
        top = (torch.rand(n, generator=generator) * (height - h + 1)).long()
        left = (torch.rand(n, generator=generator) * (width - w + 1)).long()
        chosen = torch.rand(n, generator=generator) < self.erase
        rows = torch.arange(height).view(1, height, 1)
        cols = torch.arange(width).view(1, 1, width)
        box = ((rows >= top.view(n, 1, 1)) & (rows < (top + h).view(n, 1, 1))
               & (cols >= left.view(n, 1, 1)) & (cols < (left + w).view(n, 1, 1)) & chosen.view(n, 1, 1))
        background = images.amin(dim=(1, 2, 3), keepdim=True)
        return torch.where(box.unsqueeze(1).to(device), background, images)


def scan_digit(raw: np.ndarray, size: int, *, square: bool = False, thick: bool = False,
               threshold: float | None = None, white_on_black: bool = False) -> np.ndarray:
    """An MNIST digit (28x28 uint8, white on black) scanned into a ``size``-pixel square it fills:
    cropped to its ink, its longer side scaled to ``size`` (or stretched to the whole square),
    strokes optionally thickened by a 3x3 maximum at that size, optionally thresholded to black and
    white at ``threshold`` -> grayscale in [0, 1], black ink on white unless ``white_on_black``.
    ``FramedScans`` draws these for training; ``scripts.digit_robustness`` renders its kinds with it."""
    rows, cols = np.flatnonzero(raw.max(axis=1) > 30), np.flatnonzero(raw.max(axis=0) > 30)
    crop = Image.fromarray(raw[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
    if square:
        width, height = size, size
    else:
        scale = size / max(crop.size)
        width, height = max(1, round(crop.width * scale)), max(1, round(crop.height * scale))
    frame = Image.new("L", (size, size))
    frame.paste(crop.resize((width, height), Image.Resampling.BILINEAR), ((size - width) // 2, (size - height) // 2))
    if thick:
        frame = frame.filter(ImageFilter.MaxFilter(3))
    ink = np.asarray(frame, dtype=np.float32) / 255
    if threshold is not None:
        ink = (ink > threshold).astype(np.float32)
    return ink if white_on_black else 1.0 - ink


class Swap:
    """Training digits drawn once more in a way MNIST does not show, and swapped into batches.

    ``draw`` renders one raw digit (28x28 uint8, white on black) as a grayscale image in [0, 1],
    as someone would upload it, or returns None where this way of writing does not apply to its
    label. ``prepare`` sends every drawing through the service's preprocessing once per run
    (``model.preprocess``, so the network sees what the service will make of such uploads), and
    ``mix`` swaps ``share`` of each batch's digits for their drawings, before the batch
    augmentation. ``key`` names it in the checkpoint's hyper-parameters.
    """

    key: str
    share: float

    def draw(self, raw: np.ndarray, label: int, rng: np.random.Generator) -> np.ndarray | None:
        raise NotImplementedError

    def prepare(self, images: np.ndarray, labels: np.ndarray, seed: int,
                config: PreprocessConfig = DEFAULT_CONFIG) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw training digits [N, 28, 28] and their labels -> (their drawings as the network
        reads them [N, 1, 28, 28], normalised; [N] bool: usable, False where there is no
        drawing or it holds no ink)."""
        rng = np.random.default_rng(seed)
        arrays = np.zeros((len(images), config.canvas, config.canvas), np.float32)
        usable = np.zeros(len(images), bool)
        for i, (raw, label) in enumerate(zip(images, labels, strict=True)):
            drawing = self.draw(raw, int(label), rng)
            if drawing is None:
                continue
            try:
                arrays[i] = preprocess_digit(drawing, config)
                usable[i] = True
            except NoInkError:
                pass
        return normalise(arrays, config), torch.from_numpy(usable)

    def mix(self, inputs: torch.Tensor, drawings: torch.Tensor, usable: torch.Tensor,
            generator: torch.Generator) -> torch.Tensor:
        """A batch with ``share`` of its (usable) digits swapped for their drawings."""
        swap = (torch.rand(len(inputs), generator=generator) < self.share) & usable
        return torch.where(swap.to(inputs.device).view(-1, 1, 1, 1), drawings.to(inputs.device), inputs)


@dataclass(frozen=True)
class FramedScans(Swap):
    """Digits scanned so that they fill their frame, as the service's preprocessing presents them.

    A scan cropped to the digit, at 12-24 pixels and written with a thick pen, leaves little
    paper at its border, and the border is where the preprocessing tells paper from ink: more
    than half of it can be ink, and the digit then reaches the network inverted (its paper read
    as ink). No rule tells a frame-filling binary digit's polarity from its pixels, so the
    network learns to read both: each training digit is drawn once as such a scan (its longer
    side filling the frame, or stretched square; strokes thickened; thresholded; black on white
    or white on black).
    """

    key = "framed_scans"
    share: float = 0.25
    sizes: tuple[int, int] = (12, 24)
    square: float = 0.3  # share stretched to fill the frame both ways
    thick: float = 0.6  # share with strokes thickened by a 3x3 maximum at the scan's size
    binary: float = 0.7  # share thresholded to black and white

    def draw(self, raw: np.ndarray, label: int, rng: np.random.Generator) -> np.ndarray:
        """One MNIST digit -> a scan drawn at random, whatever its label."""
        size = int(rng.integers(self.sizes[0], self.sizes[1] + 1))
        square = bool(rng.random() < self.square)
        thick = bool(rng.random() < self.thick)
        threshold = float(rng.uniform(0.3, 0.6)) if rng.random() < self.binary else None
        return scan_digit(raw, size, square=square, thick=thick, threshold=threshold, white_on_black=bool(rng.random() >= 0.5))


@dataclass(frozen=True)
class EuropeanDigits(Swap):
    """1s and 7s as continental European writers draw them (``training.render.european_habits``:
    a 1 with a long flag, a crossed 7). MNIST's American writers seldom flag a 1, so a network
    trained on MNIST alone reads a flagged 1 as a 7; the strip renderer already writes these, and
    real cheques and forms are full of them. Other digits have no such drawing."""

    key = "european_digits"
    share: float = 0.3

    def draw(self, raw: np.ndarray, label: int, rng: np.random.Generator) -> np.ndarray | None:
        if label not in (1, 7):
            return None
        return 1.0 - european_habits(raw, label, rng).astype(np.float32) / 255
