"""Read real digits by other writers through the real HTTP app: a check on handwriting that is
not MNIST's, for whoever has such a set. Nothing here is trained or tuned on it.

The set is UCI's "Optical Recognition of Handwritten Digits" (optdigits; Alpaydin and Kaynak,
1998, CC BY 4.0): forms filled in by 43 writers other than MNIST's, each digit a 32x32 bitmap
counted down to 8x8 blocks of 0-16 ink pixels. Its CSV (64 counts and the label per row) ships as
``optdigits.tes`` from UCI, and as ``sklearn/datasets/data/digits.csv.gz`` inside scikit-learn's
wheel (the same 1,797 test-part digits); neither is a dependency of this project:

    python -m scripts.other_writers --csv digits.csv.gz [--strips 600]

It reports, with 95% Wilson intervals:
- each digit sent alone to ``POST /predict/digit`` as the 8x8 image it is, and enlarged four
  times (pixels repeated, as a thumbnail viewer shows it), dark ink on white;
- strips of 3-7 of its digits, side by side at 48 pixels with gaps of 0-20% of a digit, sent to
  ``POST /predict/sequence``: read exactly, count right, edit distance per digit.
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.settings import Settings
from scripts.strip_accuracy import share
from training.line_reader import edit_distance


def load_optdigits(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """UCI optdigits CSV (gzipped or not) -> grayscale images [N, 8, 8] in [0, 1], black ink on
    white, and labels [N]."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        rows = np.loadtxt(handle, delimiter=",")
    return 1.0 - rows[:, :64].reshape(-1, 8, 8) / 16.0, rows[:, 64].astype(np.int64)


def png(gray: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.rint(gray * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def enlarge(gray: np.ndarray, factor: int) -> np.ndarray:
    return np.kron(gray, np.ones((factor, factor)))


def strip_of(grays: np.ndarray, rng: np.random.Generator, height: int = 48) -> np.ndarray:
    """Digits side by side at ``height`` pixels (bilinear), gaps of 0-20% of a digit, on white."""
    def paper(width: int) -> np.ndarray:
        return np.ones((height, width))

    parts = [paper(height // 2)]
    for gray in grays:
        image = Image.fromarray(np.rint(gray * 255).astype(np.uint8)).resize((height, height), Image.Resampling.BILINEAR)
        parts += [np.asarray(image, np.float64) / 255, paper(int(rng.uniform(0, 0.2) * height))]
    parts.append(paper(height // 2))
    return np.pad(np.concatenate(parts, axis=1), ((height // 3, height // 3), (0, 0)), constant_values=1.0)


def read_digits(client: TestClient, grays: np.ndarray, batch: int = 32) -> np.ndarray:
    labels = []
    for start in range(0, len(grays), batch):
        files = [("files", (f"{i}.png", png(g), "image/png")) for i, g in enumerate(grays[start : start + batch])]
        response = client.post("/predict/digit", files=files)
        response.raise_for_status()
        labels += [p["label"] for p in response.json()["predictions"]]
    return np.array(labels)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, required=True, help="UCI optdigits CSV: 64 counts 0-16 and the label per row")
    parser.add_argument("--strips", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    grays, labels = load_optdigits(args.csv)
    rng = np.random.default_rng(args.seed)
    n = len(labels)
    with TestClient(create_app(Settings(device="cpu"))) as client:
        print(f"{n} digits by other writers ({args.csv.name}); strips seed {args.seed}")
        print("| measure | value (95% interval) |\n| --- | --- |")
        for factor in (1, 4):
            read = read_digits(client, np.stack([enlarge(g, factor) for g in grays]))
            wrong = read != labels
            pairs, counts = np.unique(np.stack([labels[wrong], read[wrong]], 1), axis=0, return_counts=True)
            common = ", ".join(f"{t} as {r} ({c})" for (t, r), c in sorted(zip(pairs.tolist(), counts), key=lambda x: -x[1])[:3])
            print(f"| single digits, {8 * factor}x{8 * factor}, read right | {share(int((~wrong).sum()), n)}; commonest: {common} |")
        exact = count_right = edits = total = 0
        for _ in range(args.strips):
            pick = rng.integers(0, n, int(rng.integers(3, 8)))
            truth = labels[pick].tolist()
            response = client.post("/predict/sequence", files=[("strip", ("strip.png", png(strip_of(grays[pick], rng)), "image/png"))])
            read = [d["label"] for d in response.json()["digits"]] if response.status_code == 200 else []
            exact += read == truth
            count_right += len(read) == len(truth)
            edits += edit_distance(read, truth)
            total += len(truth)
        print(f"| strips of 3-7 digits at 48 px, read exactly | {share(exact, args.strips)} |")
        print(f"| strips, digit count right | {share(count_right, args.strips)} |")
        print(f"| strips, digit error (edit distance / digits) | {100 * edits / total:.2f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
