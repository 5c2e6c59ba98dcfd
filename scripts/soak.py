"""Soak test: hold the real service under steady load and watch errors, memory and latency.

Starts ``python -m app`` on a free port, drives it from this process over 127.0.0.1 with
``--concurrency`` concurrent clients for ``--seconds`` (a mix of single digits, 8-digit strips and
digit sums built from MNIST test digits), samples the server's RSS every second, and prints a
table per 30-second window plus a verdict:

    python -m scripts.soak --seconds 300 --concurrency 32

Bounds checked: no errors; RSS after the first window grows by at most --rss-bound-mb; the last
window's p99 is at most twice the first's.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from bench.processes import running_service
from training.data import load_split
from training.strips import digit_image, encode, make_strip

WINDOW = 30.0


@dataclass
class Window:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    kinds: Counter = field(default_factory=Counter)
    rss_mb: list[float] = field(default_factory=list)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def requests_pool(seed: int) -> list[tuple[str, list, dict]]:
    """Prepared requests (path, files, data): 70% one digit, 20% an 8-digit strip, 10% a sum."""
    test = load_split("test")
    rng = np.random.default_rng(seed)
    pool = []
    for i in range(200):
        index = int(rng.integers(len(test)))
        if i % 10 < 7:
            image = digit_image(test.images[index], size=int(rng.integers(28, 200)), black_on_white=bool(i % 2))
            pool.append(("/predict/digit", [("files", ("d.png", encode(image), "image/png"))], {}))
        elif i % 10 < 9:
            picks = rng.integers(0, len(test), 8)
            strip = make_strip(test.images[picks], test.labels[picks], rng)
            pool.append(("/predict/sequence", [("strip", ("s.png", encode(strip.image), "image/png"))], {}))
        else:
            pool.append(("/predict/digit-sum", [("file", ("d.png", encode(digit_image(test.images[index])), "image/png"))],
                         {"number": str(int(rng.integers(-3000, 3001)))}))
    return pool


async def drive(url: str, pid: int, seconds: float, concurrency: int, pool: list) -> list[Window]:
    windows = [Window() for _ in range(int(np.ceil(seconds / WINDOW)))]
    start = time.monotonic()
    stop = start + seconds

    def window() -> Window:
        return windows[min(int((time.monotonic() - start) // WINDOW), len(windows) - 1)]

    async def client_loop(worker: int) -> None:
        rng = random.Random(worker)
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            while time.monotonic() < stop:
                path, files, data = rng.choice(pool)
                began = time.monotonic()
                try:
                    response = await client.post(path, files=files, data=data)
                    kind = f"{path} {response.status_code}"
                except httpx.HTTPError as error:
                    kind = f"{path} {type(error).__name__}"
                target = window()
                target.latencies.append(time.monotonic() - began)
                target.errors += not kind.endswith(" 200")
                target.kinds[kind] += 1

    async def sample_rss() -> None:
        while time.monotonic() < stop:
            window().rss_mb.append(rss_mb(pid))
            await asyncio.sleep(1.0)

    await asyncio.gather(sample_rss(), *(client_loop(i) for i in range(concurrency)))
    return windows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rss-bound-mb", type=float, default=50)
    args = parser.parse_args()

    pool = requests_pool(seed=0)
    with running_service() as service:
        windows = asyncio.run(drive(service.url, service.process.pid, args.seconds, args.concurrency, pool))
    print(f"soak: {args.seconds:.0f} s at concurrency {args.concurrency}, "
          "70% single digits / 20% 8-digit strips / 10% digit sums\n")
    print("| window (s) | requests | req/s | errors | p50 (ms) | p99 (ms) | RSS min-max (MB) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for i, w in enumerate(windows):
        lat = np.array(w.latencies) * 1000
        span = min(WINDOW, args.seconds - i * WINDOW)
        print(f"| {i * WINDOW:.0f}-{i * WINDOW + span:.0f} | {len(lat)} | {len(lat) / span:.1f} | {w.errors} | "
              f"{np.percentile(lat, 50):.0f} | {np.percentile(lat, 99):.0f} | {min(w.rss_mb):.0f}-{max(w.rss_mb):.0f} |")
    total = sum(len(w.latencies) for w in windows)
    errors = sum(w.errors for w in windows)
    baseline = max(windows[0].rss_mb)
    peak = max(max(w.rss_mb) for w in windows[1:]) if len(windows) > 1 else baseline
    first_p99 = np.percentile(windows[0].latencies, 99)
    last_p99 = np.percentile(windows[-1].latencies, 99)
    checks = {
        f"no errors ({errors} of {total})": errors == 0,
        f"RSS growth after the first window {peak - baseline:+.1f} MB <= {args.rss_bound_mb:.0f} MB": peak - baseline <= args.rss_bound_mb,
        f"p99 stable: last window {last_p99 * 1000:.0f} ms <= 2 x first {first_p99 * 1000:.0f} ms": last_p99 <= 2 * first_p99,
    }
    print("\nanswers:", dict(sum((w.kinds for w in windows), Counter())))
    print()
    for text, ok in checks.items():
        print(("PASS " if ok else "FAIL ") + text)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
