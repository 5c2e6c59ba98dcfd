"""Attack the real service with what takes memory and time, and check it holds.

Starts ``python -m app`` (one worker unless ``--workers``) on a free port on 127.0.0.1 and, for
``--seconds``, runs ``--concurrency`` attackers, each cycling through:

* **bombs**: 256 copies of a 40-megapixel PNG of a few kilobytes (each image under
  MAX_IMAGE_PIXELS, the body under MAX_BODY_BYTES): 10 billion pixels declared;
* **at the limits**: one 40-megapixel image (under MAX_REQUEST_PIXELS), and 256 single digits;
* **abandoned**: a request of 12 four-megapixel images whose client gives up after 0.2 s;

and beside them ``--slow`` clients that send a digit's upload 8 bytes a second (the service must
cut them off with 408 after ``BODY_TIMEOUT_SECONDS``) and ``--idle-connections`` connections that
send nothing at all (closed by the service, or merely held: either way others must be served),
while one well-behaved client sends a single digit every 50 ms and times each answer. The
server's RSS is sampled every 0.2 s. After the attack the service idles ``--idle`` seconds and its
RSS is read again; then it gets SIGTERM under a last burst, and the time to exit is measured.

    python -m scripts.attack --seconds 60 --concurrency 16

Printed: statuses by kind, RSS before / peak / after idle, the normal client's latency (p50, p99,
max) and errors, and the SIGTERM exit time and code. Bounds checked (exit status 1 otherwise):
no answer outside {200, 4xx, 503}, peak RSS under --peak-bound-mb, RSS after idle within
--idle-bound-mb of the start, normal p99 under 1 s, exit within SHUTDOWN_TIMEOUT_SECONDS + 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

import httpx
from PIL import Image

from bench.processes import rss_mb, running_service
from training.data import load_split
from training.strips import digit_image, encode


# How an attempt may end without being a failure of the service.
FINE = {"gave up", "closed by the service", "still open at the end", "still sending at the end"}


def acceptable(status: int | str) -> bool:
    """An answer in {200, 4xx, 503} (a refusal's detail may follow its code), or a client-side end."""
    code = int(status.split(":")[0]) if isinstance(status, str) and status[:3].isdigit() else status
    if isinstance(code, int):
        return code == 200 or 400 <= code < 500 or code == 503
    return code in FINE


def white_png(width: int, height: int) -> bytes:
    image = Image.new("L", (width, height), 255)
    image.paste(Image.new("L", (max(8, width // 50), max(8, height // 50)), 0), (width // 2, height // 2))
    return encode(image)


def bodies(data_dir: str | None) -> dict[str, list[tuple[str, tuple[str, bytes, str]]]]:
    test = load_split("test", data_dir)
    huge, big = white_png(8000, 5000), white_png(2000, 2000)
    digits = [encode(digit_image(test.images[i])) for i in range(256)]
    return {
        "bomb x256": [("files", (f"{i}.png", huge, "image/png")) for i in range(256)],
        "40 MP x1": [("files", ("big.png", huge, "image/png"))],
        "digit x256": [("files", (f"{i}.png", d, "image/png")) for i, d in enumerate(digits)],
        "abandoned 4 MP x12": [("files", (f"{i}.png", big, "image/png")) for i in range(12)],
        "normal": [("files", ("d.png", digits[0], "image/png"))],
    }


async def attacker(client: httpx.AsyncClient, url: str, payloads: dict, until: float, statuses: Counter) -> None:
    kinds = ["bomb x256", "40 MP x1", "digit x256", "abandoned 4 MP x12"]
    k = 0
    while time.monotonic() < until:
        kind = kinds[k % len(kinds)]
        k += 1
        try:
            timeout = 0.2 if kind.startswith("abandoned") else 30
            response = await client.post(url + "/predict/digit", files=payloads[kind], timeout=timeout)
            statuses[(kind, response.status_code)] += 1
        except httpx.TimeoutException:
            statuses[(kind, "gave up")] += 1
        except httpx.TransportError as error:
            statuses[(kind, type(error).__name__)] += 1


def _multipart(files: list[tuple[str, tuple[str, bytes, str]]]) -> tuple[bytes, str]:
    request = httpx.Request("POST", "http://x/", files=files)
    return request.read(), request.headers["content-type"]


async def slow_client(url: str, payload, until: float, statuses: Counter) -> None:
    """Send a digit's upload 8 bytes a second, again and again until ``until``; record how each
    attempt ended: the service's status line, or still sending when the attack ended."""
    parts = urlsplit(url)
    body, content_type = _multipart(payload)
    while time.monotonic() < until:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(f"POST /predict/digit HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: {content_type}\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode())
        answer = asyncio.ensure_future(reader.readline())
        sent = 0
        while not answer.done() and sent < len(body) and time.monotonic() < until:
            writer.write(body[sent : sent + 8])
            sent += 8
            try:
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.wait([answer], timeout=1.0)
        if answer.done() and not answer.exception():
            line = answer.result().split()
            statuses[("slow body", int(line[1]) if len(line) > 1 else "closed")] += 1
        else:
            answer.cancel()
            statuses[("slow body", "still sending at the end")] += 1
        writer.close()


async def idle_connections(url: str, count: int, until: float, statuses: Counter) -> None:
    """Open ``count`` connections that never send a byte, hold them until ``until``, and count
    those the service closed meanwhile."""
    parts = urlsplit(url)
    opened = [await asyncio.open_connection(parts.hostname, parts.port) for _ in range(count)]
    closed = [asyncio.ensure_future(reader.read()) for reader, _ in opened]
    await asyncio.sleep(max(until - time.monotonic(), 0))
    statuses[(f"idle connection x{count}", "closed by the service")] += sum(task.done() for task in closed)
    statuses[(f"idle connection x{count}", "still open at the end")] += sum(not task.done() for task in closed)
    for task in closed:
        task.cancel()
    for _, writer in opened:
        writer.close()


async def normal_client(client: httpx.AsyncClient, url: str, payload, until: float, latencies: list[float],
                        statuses: Counter) -> None:
    while time.monotonic() < until:
        started = time.perf_counter()
        try:
            response = await client.post(url + "/predict/digit", files=payload, timeout=30)
            if response.status_code == 200:
                statuses[("normal", 200)] += 1
                latencies.append(time.perf_counter() - started)
            else:  # which refusal: the detail tells the pixel budget, the queue and admission apart
                statuses[("normal", f"{response.status_code}: {response.json().get('detail', '')[:48]}")] += 1
        except httpx.TransportError as error:
            statuses[("normal", type(error).__name__)] += 1
        await asyncio.sleep(0.05)


async def sampler(pid: int | None, until: float, samples: list[float]) -> None:
    while pid is not None and time.monotonic() < until:
        samples.append(rss_mb(pid))
        await asyncio.sleep(0.2)


async def attack(url: str, pid: int | None, payloads: dict, seconds: float, concurrency: int, slow: int = 4,
                 idle: int = 200) -> tuple[Counter, list[float], list[float]]:
    statuses: Counter = Counter()
    latencies: list[float] = []
    samples: list[float] = []
    until = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(limits=limits) as client:
        await asyncio.gather(sampler(pid, until, samples),
                             normal_client(client, url, payloads["normal"], until, latencies, statuses),
                             idle_connections(url, idle, until, statuses),
                             *(slow_client(url, payloads["normal"], until, statuses) for _ in range(slow)),
                             *(attacker(client, url, payloads, until, statuses) for _ in range(concurrency)))
    return statuses, latencies, samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="MNIST IDX folder (default $MNIST_DATA_DIR)")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--idle", type=float, default=30, help="seconds of idling after the attack before RSS is read")
    parser.add_argument("--slow", type=int, default=4, help="clients trickling their bodies")
    parser.add_argument("--idle-connections", type=int, default=200, help="connections that never send a byte")
    parser.add_argument("--workers", default="1")
    parser.add_argument("--peak-bound-mb", type=float, default=1536)
    parser.add_argument("--idle-bound-mb", type=float, default=100)
    parser.add_argument("--url", help="attack a service already running there (a container, say) instead of starting "
                        "one: only the statuses are checked (no RSS, no SIGTERM)")
    args = parser.parse_args()
    payloads = bodies(args.data_dir)
    if args.url:
        return attack_running(args.url, payloads, args.seconds, args.concurrency, args.slow, args.idle_connections)
    ok = True
    with running_service(WORKERS=args.workers) as service:
        pid = service.process.pid
        httpx.post(service.url + "/predict/digit", files=payloads["normal"], timeout=30)
        before = rss_mb(pid)
        statuses, latencies, samples = asyncio.run(attack(service.url, pid, payloads, args.seconds, args.concurrency,
                                                          args.slow, args.idle_connections))
        peak = max(samples)
        time.sleep(args.idle)
        after = rss_mb(pid)
        # SIGTERM under a last burst of attackers.
        burst_until = time.monotonic() + 3

        async def burst() -> None:
            async with httpx.AsyncClient() as client:
                await asyncio.gather(*(attacker(client, service.url, payloads, burst_until, Counter()) for _ in range(8)))

        import threading

        thread = threading.Thread(target=lambda: asyncio.run(burst()), daemon=True)
        thread.start()
        time.sleep(1)
        started = time.monotonic()
        service.process.send_signal(signal.SIGTERM)
        code = service.process.wait(timeout=120)
        exit_seconds = time.monotonic() - started
    latencies.sort()
    p50 = latencies[len(latencies) // 2] if latencies else float("nan")
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else float("nan")
    print("| kind | status | count |\n| --- | --- | ---: |")
    for (kind, status), count in sorted(statuses.items(), key=lambda item: (item[0][0], str(item[0][1]))):
        print(f"| {kind} | {status} | {count} |")
    print(f"\nRSS: before {before:.0f} MB, peak {peak:.0f} MB, after {args.idle:.0f} s idle {after:.0f} MB")
    print(f"normal client: {len(latencies)} answered, p50 {1000 * p50:.1f} ms, p99 {1000 * p99:.1f} ms, "
          f"max {1000 * (latencies[-1] if latencies else float('nan')):.1f} ms")
    print(f"SIGTERM under attack: exit code {code} after {exit_seconds:.1f} s")
    bad = [key for key in statuses if not acceptable(key[1])]
    checks = {"answers only 200, 4xx, 503 (and no connection broken by the service)": not bad,
              f"peak RSS < {args.peak_bound_mb:.0f} MB": peak < args.peak_bound_mb,
              f"RSS after idle within {args.idle_bound_mb:.0f} MB of the start": after - before <= args.idle_bound_mb,
              "normal p99 < 1 s": p99 < 1.0,
              "SIGTERM exit within 32 s, code 0": exit_seconds <= 32 and code == 0}
    for name, passed in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}: {name}")
        ok = ok and passed
    return 0 if ok else 1


def attack_running(url: str, payloads: dict, seconds: float, concurrency: int, slow: int, idle: int) -> int:
    """The attack against a service someone else started: every answer in {200, 4xx, 503}, and a
    normal request answered 200 right after."""
    statuses, latencies, _ = asyncio.run(attack(url, None, payloads, seconds, concurrency, slow, idle))
    for (kind, status), count in sorted(statuses.items(), key=lambda item: (item[0][0], str(item[0][1]))):
        print(f"  {kind}: {status} x{count}")
    after = httpx.post(url + "/predict/digit", files=payloads["normal"], timeout=30).status_code
    bad = [key for key in statuses if not acceptable(key[1])]
    print(f"normal client: {len(latencies)} answered during the attack; a normal request right after: {after}")
    if bad or after != 200:
        print(f"FAIL: answers outside 200/4xx/503 or transport errors {bad}, or {after} right after")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
