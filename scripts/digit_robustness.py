"""How the digit models read single digits written and scanned unlike MNIST: thick pens, 16x16
binary scans, small grey postal crops, paint-program strokes, thumbnails, European 1s and 7s.
Each kind is rendered from MNIST *test* digits (no other data set is used, for training or here), sent through the
service's preprocessing (``model.preprocess.preprocess_digits``) and read by the checkpoint
(``digit.pt``, or ``digit_sum.pt``, whose own encoder reads the digit it adds to):

    python -m scripts.digit_robustness --data-dir ../shared/data/mnist --count 3000 \\
        --checkpoint weights/digit.pt [--checkpoint weights/digit_sum.pt ...]

A digit is cropped to its ink, scaled so its longer side fills the target size (aspect kept), or
stretched to the whole square as some form scanners store digits, optionally thickened (a 3x3
maximum at that size) and thresholded, and sent black on white, then again white on black (a digit
that fills its frame leaves the preprocessing little paper at the border to tell the two apart by).
A scan the preprocessing finds no digit in (a 1 stretched into a solid block) counts as misread.
The last rows take the 1s and 7s among the digits and draw them as European writers do (most 1s
with a long flag, some 7s crossed), and break every digit's strokes in one or two places (a round
gap erased where the ink is, as a skipping pen or a scanner's threshold leaves), at MNIST's 28x28.

``--split val`` renders the digits held out of training for validation instead (seed 0's 5,000,
as ``python -m training train`` holds them out): the figures to choose between candidate
checkpoints by, so that the test digits stay a final measurement.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.architectures import DigitSumNet
from model.checkpoint import load_checkpoint
from model.preprocess import normalise, preprocess_digits, to_inks
from training.augment import scan_digit
from training.data import load_split, train_val_indices
from training.render import european_habits
from training.options import RunOptions


VAL_SIZE = RunOptions.val_size  # the hold-out `python -m training train` makes (seed 0)


@dataclass(frozen=True)
class Kind:
    size: int  # pixels of the square image
    thick: bool  # strokes thickened by a 3x3 maximum at that size
    binary: bool  # thresholded to black and white
    square: bool = False  # stretched to fill the square both ways (aspect lost)


KINDS = {
    "16x16 binary scan, thick pen": Kind(16, True, True),
    "16x16 binary scan": Kind(16, False, True),
    "16x16 binary scan, stretched to its frame": Kind(16, False, True, square=True),
    "16x16 grey (postal)": Kind(16, False, False),
    "32x32 paint program, thick": Kind(32, True, True),
    "10x10 grey thumbnail": Kind(10, False, False),
}


def render(raw: np.ndarray, kind: Kind) -> np.ndarray:
    """An MNIST digit (white on black, uint8) -> grayscale in [0, 1], black ink on white."""
    return scan_digit(raw, kind.size, square=kind.square, thick=kind.thick, threshold=0.4 if kind.binary else None)


def european(images: np.ndarray, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The 1s and 7s among ``images`` as European writers draw them (most 1s flagged, some 7s
    crossed: ``training.render.european_habits``), grayscale in [0, 1], black ink on white."""
    rng = np.random.default_rng(seed)
    ones_and_sevens = np.isin(labels, (1, 7))
    grays = [1.0 - european_habits(raw, int(label), rng) / 255.0
             for raw, label in zip(images[ones_and_sevens], labels[ones_and_sevens], strict=True)]
    return np.stack(grays).astype(np.float32), labels[ones_and_sevens]


def broken(images: np.ndarray, seed: int) -> np.ndarray:
    """Every digit with one or two gaps in its strokes: a disc of radius 1-1.8 px erased around
    an ink pixel drawn at random -> grayscale in [0, 1], black ink on white. (Training's
    ``WritingAugment.broken`` erases short bands instead.)"""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:28, :28]
    grays = []
    for raw in images:
        ink = raw.astype(np.float32) / 255
        for _ in range(int(rng.integers(1, 3))):
            rows, cols = np.nonzero(ink > 0.5)
            if not len(rows):
                break
            pick = int(rng.integers(len(rows)))
            radius = rng.uniform(1.0, 1.8)
            ink[(ys - rows[pick]) ** 2 + (xs - cols[pick]) ** 2 <= radius**2] = 0
        grays.append(1.0 - ink)
    return np.stack(grays).astype(np.float32)


def digit_logits(model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The digit logits of ``digit.pt`` (a classifier) or of ``digit_sum.pt`` (its first output)."""
    if isinstance(model, DigitSumNet):
        return model(inputs, torch.zeros(len(inputs)))[0]
    return model(inputs)


def accuracy(model: torch.nn.Module, grays: np.ndarray, labels: np.ndarray) -> float:
    """Share of the digit images ``grays`` (black on white, [0, 1]) that the model (``digit.pt``'s
    or ``digit_sum.pt``'s) reads right; one the service would find no digit in (``to_inks``' blank)
    counts as misread."""
    found = ~to_inks(grays)[1]
    inputs = normalise(preprocess_digits(grays[found]))
    with torch.inference_mode():
        predicted = torch.cat([digit_logits(model, inputs[i : i + 1000]).argmax(1) for i in range(0, len(inputs), 1000)])
    return float((predicted.numpy() == labels[found]).sum() / len(labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", type=Path, action="append", default=None)
    parser.add_argument("--split", choices=["test", "val"], default="test",
                        help="test digits (default), or the training digits held out for validation")
    args = parser.parse_args()
    checkpoints = args.checkpoint or [Path("weights/digit.pt")]
    if args.split == "test":
        digits = load_split("test", args.data_dir)
        pool = np.arange(len(digits.labels))
    else:
        digits = load_split("train", args.data_dir)
        pool = train_val_indices(len(digits), VAL_SIZE, 0)[1]
    chosen = np.random.default_rng(args.seed).choice(pool, min(args.count, len(pool)), replace=False)
    images, labels = digits.images[chosen], digits.labels[chosen]
    models = [load_checkpoint(c).model.eval() for c in checkpoints]

    def row(name: str, grays: np.ndarray, truth: np.ndarray) -> None:
        figures = [accuracy(model, grays, truth) for model in models]
        print(f"| {name} | " + " | ".join(f"{100 * f:.2f}%" for f in figures) + " |", flush=True)

    print("| kind | " + " | ".join(str(c) for c in checkpoints) + " |")
    print("| --- |" + " ---: |" * len(checkpoints))
    for white_on_black in (False, True):
        for name, kind in KINDS.items():
            grays = np.stack([render(image, kind) for image in images])
            row(f"{name}, white on black" if white_on_black else name, 1.0 - grays if white_on_black else grays, labels)
    grays, european_labels = european(images, labels, args.seed)
    row(f"1s and 7s of European writers ({len(european_labels)}: 1s flagged, some 7s crossed), 28x28",
        grays, european_labels)
    row("strokes broken in one or two places, 28x28", broken(images, args.seed), labels)


if __name__ == "__main__":
    main()
