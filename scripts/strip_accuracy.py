"""Measure how well the service reads strips of MNIST test digits, through the real HTTP app.

Each strip: 3-30 test digits, black ink on white, 40-140 px tall, gaps between digits drawn
uniformly from 0 to 1/3 of a digit's width (training/strips.make_strip). It is uploaded as PNG to
POST /predict/sequence and the answer compared with the truth:

    python -m scripts.strip_accuracy --data-dir ../shared/data/mnist --count 1000

Lengths are drawn uniformly from 3..30 (``--lengths uniform``, the harder case: 16.5 digits on
average) or as in the study, N(10, 3) clipped to 3..30 (``--lengths study``).

``--condition`` renders strips as the world writes them instead (``training.render``: patterned
paper, punctuation and lines that are not digits, touching digits, JPEG), with the training
generator's settings (``--style train``) or the held-out dev settings whose paper and marks
training never draws (``--style dev``); their lengths are amounts (1-8 digits) and 3-30:

    python -m scripts.strip_accuracy --condition cheque --style dev --count 500

``--pen ballpoint`` writes every rendered strip with a ballpoint (strokes 3-7% of the digit
height; MNIST's are about 12%), as amounts on cheques are written (``training.render``).

``--tilt DEGREES`` rotates every strip by that angle, uphill and downhill in turn, as a strip
photographed askew or written along a drifting line (``training.render.tilt_in_turn``).

Beside the service's figures it prints a ceiling: the strips whose every digit the digit model
reads right as the clean 28x28 test image: what cutting the strip perfectly and reading each digit
with ``digit.pt`` would score (the reader this one replaced worked that way), a reference for the
line reader, which reads the strip whole.

Each share comes with its 95% Wilson interval: on 1,000 strips a figure near 94% is known only to
about +-1.5 points (different seeds differ by that much), so compare versions on the same strips
(same --seed and --count) and use several thousand strips for a figure to quote.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from model.checkpoint import load_checkpoint
from model.preprocess import normalise, preprocess_digits
from training.data import load_split
from training.loop import predict_logits
from training.line_reader import edit_distance
from training.render import CONDITIONS, DEV_STYLE, TRAIN_STYLE, render_set, tilt_in_turn
from training.strips import encode, make_strip

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


def lengths_for(kind: str, count: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "uniform":
        return rng.integers(3, 31, count)
    return np.clip(np.rint(rng.normal(10, 3, count)), 3, 30).astype(int)


def clean_reading(split) -> np.ndarray:
    """The digit model's label for every image of the split as a clean 28x28 image."""
    model = load_checkpoint(WEIGHTS / "digit.pt").model
    logits = predict_logits(model, normalise(preprocess_digits(split.images)), torch.device("cpu"))
    return logits.argmax(1).numpy()


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial share (sound near 0 and 1, unlike the normal one)."""
    if n == 0:
        return 0.0, 1.0
    rate = successes / n
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def share(successes: int, n: int) -> str:
    """'93.10% (91.4-94.5)': a share of strips with its 95% interval."""
    low, high = wilson_interval(successes, n)
    return f"{100 * successes / max(n, 1):.2f}% ({100 * low:.1f}-{100 * high:.1f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="MNIST IDX folder (default $MNIST_DATA_DIR)")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lengths", choices=["uniform", "study"], default="uniform")
    parser.add_argument("--condition", choices=CONDITIONS, help="real-world strips of this kind instead of MNIST-made ones")
    parser.add_argument("--style", choices=["train", "dev"], default="dev", help="--condition: the generator's settings")
    parser.add_argument("--tilt", type=float, default=0.0, help="rotate each strip by this many degrees, up and down in turn")
    parser.add_argument("--pen", choices=["mixed", "ballpoint"], default="mixed",
                        help="--condition: the style's pens, or every strip written with a ballpoint")
    args = parser.parse_args()
    if args.pen != "mixed" and not args.condition:
        parser.error("--pen writes rendered strips: it needs --condition (MNIST-made strips keep MNIST's pen)")

    test = load_split("test", args.data_dir)
    clean_right = clean_reading(test) == test.labels
    rng = np.random.default_rng(args.seed)
    ceiling = 0
    exact = four_right = count_right = digits_total = digits_wrong = 0
    started = time.perf_counter()
    if args.condition:
        style = DEV_STYLE if args.style == "dev" else TRAIN_STYLE
        if args.pen == "ballpoint":
            style = dataclasses.replace(style, ballpoint_rate=1.0)
        rendered = render_set(args.condition, test, np.arange(len(test)), args.count, args.seed, style, args.condition)
        strips = [(image, labels) for image, labels in zip(rendered.images, rendered.labels)]
        ceiling_known = False
    else:
        strips = []
        for length in lengths_for(args.lengths, args.count, rng):
            index = rng.integers(0, len(test), int(length))
            strip = make_strip(test.images[index], test.labels[index], rng)
            ceiling += bool(clean_right[index].all())
            strips.append((strip.image, strip.labels))
        ceiling_known = True
    if args.tilt:
        strips = list(zip(tilt_in_turn([image for image, _ in strips], args.tilt), [labels for _, labels in strips]))
    edits = 0
    with TestClient(create_app(Settings(device="cpu"))) as client:
        for image, labels in strips:
            response = client.post("/predict/sequence", files=[("strip", ("strip.png", encode(image), "image/png"))])
            if response.status_code == 422:  # read as holding no digit: every digit missed
                read, contains_4 = [], False
            elif response.status_code != 200:
                print(f"HTTP {response.status_code}: {response.text}", file=sys.stderr)
                continue
            else:
                body = response.json()
                read, contains_4 = [d["label"] for d in body["digits"]], body["contains_4"]
            exact += read == labels
            count_right += len(read) == len(labels)
            four_right += contains_4 == (4 in labels)
            digits_total += len(labels)
            edits += edit_distance(read, labels)
            if len(read) == len(labels):
                digits_wrong += sum(a != b for a, b in zip(read, labels))
    elapsed = time.perf_counter() - started
    n = args.count
    kind = f"{args.condition}, {args.style} style" if args.condition else f"MNIST-made, lengths {args.lengths} 3..30"
    kind += f", tilted {args.tilt:g} degrees up and down" if args.tilt else ""
    kind += ", ballpoint" if args.pen == "ballpoint" else ""
    print(f"strips: {n} ({kind}, {digits_total / n:.1f} digits on average), seed {args.seed}")
    print("| measure | value (95% interval) |\n| --- | --- |")
    print(f"| digits read exactly right (whole strip) | {share(exact, n)} |")
    if ceiling_known:
        print(f"| ceiling: every digit read right as a clean test image (cut perfectly, read by digit.pt) | {share(ceiling, n)} |")
    print(f"| contains_4 right | {share(four_right, n)} |")
    print(f"| digit count right | {share(count_right, n)} |")
    print(f"| digit error rate (strips with the right count) | {100 * digits_wrong / max(digits_total, 1):.3f}% |")
    print(f"| digit error (edit distance / true digits, all strips) | {100 * edits / max(digits_total, 1):.2f}% |")
    print(f"| time | {elapsed:.1f} s ({n / elapsed:.1f} strips/s) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
