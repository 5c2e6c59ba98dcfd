"""How fast the service reads a photographed 10-digit strip, optionally beside another checkout.

    python -m bench.strips --data-dir ../shared/data/mnist [--compare /path/to/other/checkout]

The strip: 10 MNIST test digits rendered as a photographed cheque amount (``training.render``,
dev style: patterned paper, marks, JPEG). Each server runs as ``python -m app`` with one worker,
driven by ``hey`` at concurrency 1 and 8 for ``--seconds`` after a 1 s warm-up; ``--compare``
runs the same with the other checkout's code (e.g. a worktree of an older commit) in the same
run, so the two are compared as a ratio.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from bench.processes import one_worker
from bench.run import comparison_args, Body, checkouts, measure, multipart
from training.data import load_split
from training.render import DEV_STYLE, render_strip
from training.strips import encode


def photographed_strip(data_dir: str | None) -> Body:
    test = load_split("test", data_dir)
    rng = np.random.default_rng(3)
    strip = render_strip(test.images[:10], test.labels[:10], rng, DEV_STYLE, "cheque")
    data = encode(strip.image.convert("RGB"), "JPEG", quality=90)
    return Body("/predict/sequence", multipart([("strip", "strip.jpg", data, "image/jpeg")]), 10)


def main(argv: list[str] | None = None) -> None:
    args = comparison_args(__doc__.split("\n\n")[0], argv)
    body = photographed_strip(args.data_dir)
    roots = checkouts(args.compare)
    work = Path(tempfile.mkdtemp(prefix="digitserve-strips-"))
    results = []
    for name, root in roots:
        with one_worker(root) as (url, _):
            for concurrency in (1, 8):
                results.append(measure(name, "photographed strip x10", url, body, concurrency, args.seconds, work))
    print("\n| code | concurrency | strips/s | p50 ms | p99 ms | non-200 |\n| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r.server} | {r.concurrency} | {r.rps:.1f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.errors} |")
    if args.compare:
        for c in (1, 8):
            new, old = (next(r for r in results if r.server == n and r.concurrency == c) for n, _ in roots)
            print(f"c={c}: {new.rps / old.rps:.2f}x the strips/s, p50 {old.p50_ms / new.p50_ms:.2f}x lower")


if __name__ == "__main__":
    main()
