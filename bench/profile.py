"""Where one digit request's time goes: a sampling profile of the serving process under load.

    pip install py-spy
    python -m bench.profile --data-dir ../shared/data/mnist [--compare /path/to/other/checkout] [--body "digit x256"]

Starts ``python -m app`` (one worker) from each checkout, drives it with ``hey`` at one client
sending one 28x28 PNG digit per request (or another of ``bench.run``'s bodies), and samples every thread of the process with
``py-spy`` (``--format raw``: one line per distinct stack with its count; idle threads are not
sampled). Each sample is put in the first category its stack reaches, from the innermost frame
out, and the table gives each category's share of the busy samples and its CPU milliseconds per
request: HTTP (uvicorn's protocol and h11/httptools), multipart parsing, image decoding (Pillow),
preprocessing, the model (torch), queueing and hand-offs (asyncio, futures, the batcher and the
engine), encoding the answer (FastAPI's serialisation, pydantic, JSON), metrics and logging,
routing, dependencies, middleware and the pipeline's own code, and the event loop itself.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

from bench.processes import one_worker
from bench.run import comparison_args, checkouts, hey, make_bodies

# (category, substrings of a frame's "function (file:line)") in the order they are tried on each
# frame, innermost first.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("model (torch)", ("torch/", "model/inference.py", "model/architectures.py", "model/line.py")),
    ("preprocessing", ("model/preprocess.py", "numpy/")),
    ("image decoding (Pillow)", ("PIL/", "app/handlers/uploads.py")),
    ("multipart parsing", ("multipart/", "formparsers.py")),
    ("metrics and logging", ("prometheus_client/", "logging/", "app/observability.py")),
    ("encoding the answer", ("pydantic", "json/", "fastapi/encoders.py", "serialize_response", "responses.py")),
    ("queueing and hand-offs", ("app/engine.py", "concurrent/futures", "threading.py",
                                "starlette/concurrency.py", "anyio/", "run_in_executor", "call_soon_threadsafe")),
    ("routing, dependencies, middleware, pipeline", ("fastapi/", "starlette/", "app/")),
    ("HTTP (uvicorn, h11/httptools)", ("uvicorn/", "h11/", "httptools")),
    ("event loop (asyncio)", ("asyncio/", "uvloop")),
]
OTHER = "other"
RATE = 400  # samples per second


def categorise(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for name, needles in CATEGORIES:
            if any(needle in frame for needle in needles):
                return name
    return OTHER


def profile(root: Path, body, seconds: float, work: Path, label: str) -> tuple[Counter, int, int]:
    """Samples by category, total busy samples, and requests answered, for one checkout."""
    raw = work / f"{label}.txt"
    with one_worker(root) as (url, process):
        hey(url, body, work / "body.bin", 1, 2.0)  # warm-up
        spy = subprocess.Popen(["py-spy", "record", "--pid", str(process.pid), "--duration", str(int(seconds)), "--rate", str(RATE),
                                "--format", "raw", "--threads", "--nonblocking", "--output", str(raw)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows, _ = hey(url, body, work / "body.bin", 1, seconds)
        spy.wait(timeout=seconds + 60)
    counts: Counter = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[categorise(stack)] += int(count)
    requests = sum(1 for _, status in rows if status == 200)
    return counts, sum(counts.values()), requests


def main(argv: list[str] | None = None) -> None:
    args = comparison_args(__doc__.split("\n\n")[0], argv, bodies=True)
    if shutil.which("py-spy") is None or shutil.which("hey") is None:
        raise SystemExit("needs py-spy (pip install py-spy) and hey (apt-get install hey)")
    body = make_bodies(args.data_dir)[args.body]
    work = Path(tempfile.mkdtemp(prefix="digitserve-profile-"))
    results = [(name, *profile(root, body, args.seconds, work, f"run{i}")) for i, (name, root) in enumerate(checkouts(args.compare))]
    names = [name for name, _ in CATEGORIES] + [OTHER]
    header = " | ".join(f"{name}: share, CPU ms per request" for name, *_ in results)
    print(f"\n| category | {header} |\n| --- |" + " ---: |" * len(results))
    for category in names:
        cells = []
        for _, counts, total, requests in results:
            ms = counts[category] / RATE * 1000 / max(requests, 1)
            cells.append(f"{100 * counts[category] / max(total, 1):.1f}%, {ms:.2f} ms")
        print(f"| {category} | " + " | ".join(cells) + " |")
    for name, _, total, requests in results:
        print(f"{name}: {requests} requests in {args.seconds:.0f} s ({requests / args.seconds:.0f}/s), "
              f"{total / RATE * 1000 / max(requests, 1):.2f} ms of busy samples per request")


if __name__ == "__main__":
    main()
