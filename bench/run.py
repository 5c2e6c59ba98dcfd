"""The throughput benchmark: one command, every figure of docs/performance.md, ratios in one run.

    python -m bench.run --data-dir ../shared/data/mnist

It starts each server as its own process on 127.0.0.1 and drives it from another process with
Debian's ``hey`` (``apt-get install hey``), each scenario bounded in time (``--seconds``) after
a one-second warm-up, and prints one table:

* the service (batching on, ``WORKERS`` = usable CPUs unless ``--workers``): single digits at
  concurrency 1, 8 and 64; one 256-digit ``/predict/digit`` request at a time (and 4 at a time);
  ``/predict/sequence`` with 10-digit strips; ``/predict/digit-sum``;
* the same service with ``BATCHING=false`` (one forward pass per request);
* ``bench/reference_server.py``, the tutorial-style server (default uvicorn settings);
* (a) the digit model's in-process limit: digits/s at batch 256, no HTTP, in the serving form and
  as the checkpoint's plain module;
* an overload run (concurrency 512 for ``--overload-seconds``): status codes, the service's memory
  before and after, and whether it answers normally right after;

then the ratios the acceptance asks for. ``--json`` also writes every figure to a file. Every
request of a scenario sends the same upload (hey repeats one body), built from MNIST test digits.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np
import torch

from bench.processes import ROOT, free_port, rss_mb, server
from model.checkpoint import load_checkpoint
from model.devices import usable_cpus
from model.inference import for_inference
from model.preprocess import normalise, preprocess_digit
from training.data import load_split
from training.strips import digit_image, encode, make_strip

BOUNDARY = "----digitserve-bench"


@dataclass
class Body:
    """One request body and what it holds: multipart unless ``content_type`` says otherwise."""

    path: str
    data: bytes
    digits: int
    content_type: str = f"multipart/form-data; boundary={BOUNDARY}"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    server: str
    scenario: str
    concurrency: int
    requests: int
    seconds: float
    digits_per_request: int
    statuses: dict[str, int]
    errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.statuses.get("200", 0) / self.seconds if self.seconds else 0.0

    @property
    def digits_per_s(self) -> float:
        return self.rps * self.digits_per_request


@dataclass
class Report:
    machine: dict[str, object]
    results: list[Result] = field(default_factory=list)
    in_process: dict[str, float] = field(default_factory=dict)
    overload: dict[str, object] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)


# --- request bodies --------------------------------------------------------------------------------

def multipart(parts: list[tuple[str, str, bytes, str]], fields: dict[str, str] | None = None) -> bytes:
    out = io.BytesIO()
    for name, filename, data, mime in parts:
        out.write(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                  f"Content-Type: {mime}\r\n\r\n".encode())
        out.write(data + b"\r\n")
    for name, value in (fields or {}).items():
        out.write(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    out.write(f"--{BOUNDARY}--\r\n".encode())
    return out.getvalue()


def oip_pixels(image: np.ndarray) -> Body:
    """One digit through the Open Inference Protocol as tritonclient sends it by default: the
    JSON header, then the FP32 pixels (normalised as in training) as binary."""
    pixels = normalise(preprocess_digit(image.astype(np.float32) / 255)[None]).numpy()
    head = json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": list(pixels.shape),
                                   "parameters": {"binary_data_size": pixels.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
    return Body("/v2/models/digit/infer", head + pixels.tobytes(), 1, "application/octet-stream",
                {"Inference-Header-Content-Length": str(len(head))})


def make_bodies(data_dir: str | None) -> dict[str, Body]:
    test = load_split("test", data_dir)
    rng = np.random.default_rng(0)
    png = [encode(digit_image(test.images[i])) for i in range(256)]
    strip = make_strip(test.images[:10], test.labels[:10], rng, height=56)
    return {
        "digit, OIP binary FP32": oip_pixels(test.images[0]),
        "digit": Body("/predict/digit", multipart([("files", "d.png", png[0], "image/png")]), 1),
        "digit x256": Body("/predict/digit", multipart([("files", f"d{i}.png", p, "image/png") for i, p in enumerate(png)]), 256),
        "sequence strip x10": Body("/predict/sequence", multipart([("strip", "s.png", encode(strip.image), "image/png")]), 10),
        "digit-sum": Body("/predict/digit-sum", multipart([("file", "d.png", png[0], "image/png")], {"number": "42"}), 1),
    }


BODIES = ("digit, OIP binary FP32", "digit", "digit x256", "sequence strip x10", "digit-sum")


def comparison_args(description: str, argv: list[str] | None, bodies: bool = False) -> argparse.Namespace:
    """The command line of bench.strips and bench.profile: data, seconds per run, another
    checkout to measure the same way, and (``bodies``) which of ``make_bodies``' requests to send."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--compare", type=Path, help="another checkout to measure the same way (e.g. an older commit)")
    if bodies:
        parser.add_argument("--body", choices=BODIES, default="digit", help="the request sent (default: one digit)")
    return parser.parse_args(argv)


def checkouts(compare: Path | None) -> list[tuple[str, Path]]:
    """This checkout, and ``compare`` (another checkout, e.g. a worktree of an older commit)
    when given: the code bench.strips and bench.profile measure side by side in one run."""
    roots = [("this checkout", ROOT)]
    if compare is not None:
        roots.append((str(compare), compare.resolve()))
    return roots


# --- load ------------------------------------------------------------------------------------------

def hey(url: str, body: Body, body_file: Path, concurrency: int, seconds: float) -> tuple[list[tuple[float, int]], float]:
    """Run hey for ``seconds`` at ``concurrency``; per-request (latency s, status) and wall time."""
    body_file.write_bytes(body.data)
    headers = [part for name, value in body.headers.items() for part in ("-H", f"{name}: {value}")]
    command = ["hey", "-z", f"{seconds}s", "-c", str(concurrency), "-t", "30", "-o", "csv", "-m", "POST",
               "-D", str(body_file), "-T", body.content_type, *headers, url + body.path]
    started = time.monotonic()
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 90, check=True).stdout
    wall = time.monotonic() - started
    rows = [(float(r["response-time"]), int(r["status-code"])) for r in csv.DictReader(io.StringIO(out))]
    return rows, wall


def measure(server_name: str, scenario: str, url: str, body: Body, concurrency: int, seconds: float, work: Path) -> Result:
    hey(url, body, work / "body.bin", concurrency, 1.0)  # warm-up: connections, lazy kernels
    rows, wall = hey(url, body, work / "body.bin", concurrency, seconds)
    latencies = sorted(latency for latency, _ in rows)
    statuses = Counter(str(status) for _, status in rows)
    ok = [latency for latency, status in rows if status == 200]
    ok.sort()

    def pct(q: float) -> float:
        return ok[min(len(ok) - 1, int(q * len(ok)))] * 1000 if ok else float("nan")

    result = Result(server_name, scenario, concurrency, len(latencies), min(wall, seconds) if rows else wall,
                    body.digits, dict(statuses), sum(n for s, n in statuses.items() if s != "200"), pct(0.5), pct(0.99))
    print(f"  {server_name:28s} {scenario:22s} c={concurrency:<4d} {result.rps:8.1f} req/s {result.digits_per_s:8.0f} digits/s "
          f"p50 {result.p50_ms:7.1f} ms p99 {result.p99_ms:7.1f} ms  statuses {dict(statuses)}", flush=True)
    return result


# --- in-process limit ------------------------------------------------------------------------------

def in_process_limit(data_dir: str | None, seconds: float) -> dict[str, float]:
    """Digits/s of the digit model alone at batch 256 (no HTTP, no decoding), with all usable CPUs."""
    torch.set_num_threads(usable_cpus())
    checkpoint = load_checkpoint(ROOT / "weights" / "digit.pt")
    test = load_split("test", data_dir)
    images = normalise(np.stack([preprocess_digit(test.images[i].astype(np.float32) / 255) for i in range(256)]))
    out = {}
    for name, net in (("serving form", for_inference(checkpoint.model, torch.device("cpu"))),
                      ("checkpoint module (eager)", checkpoint.model.eval())):
        with torch.inference_mode():
            for _ in range(3):
                net(images)
            count, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                net(images)
                count += 256
            out[name] = count / (time.perf_counter() - started)
        print(f"  in-process digit model, batch 256, {name}: {out[name]:.0f} digits/s", flush=True)
    return out


# --- the run ---------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> Report:
    if shutil.which("hey") is None:
        raise SystemExit("hey is not installed: apt-get install -y hey")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    workers = args.workers or usable_cpus()
    # --defaults: the service exactly as `make serve` starts it (WORKERS=auto, every default).
    service_env = {"LOG_LEVEL": "warning", "DEVICE": "cpu"} if args.defaults else \
        {"WORKERS": str(workers), "LOG_LEVEL": "warning", "DEVICE": "cpu"}
    report = Report(machine={
        "cpu": platform.processor() or platform.machine(), "cpu_model": _cpu_model(), "usable_cpus": usable_cpus(),
        "python": platform.python_version(), "torch": torch.__version__,
        "service_workers": "auto (make serve's defaults)" if args.defaults else workers,
        "seconds_per_scenario": args.seconds,
    })
    bodies = make_bodies(args.data_dir)
    print("(a) in-process limit", flush=True)
    report.in_process = in_process_limit(args.data_dir, args.seconds)

    python = sys.executable
    servers = [
        ("service", [python, "-m", "app"], service_env, True),
        ("service, batching off", [python, "-m", "app"], {**service_env, "BATCHING": "false"}, True),
        ("service, 1 worker", [python, "-m", "app"], {**service_env, "WORKERS": "1"}, False),
        ("reference (tutorial-style)", [python, "-m", "uvicorn", "bench.reference_server:app"], {}, False),
    ]
    if args.digits_only:  # the quick comparison: single digits and the 256-digit request
        servers = [entry for entry in servers if entry[0] in ("service", "reference (tutorial-style)")]
    for name, command, env, everything in servers:
        port = free_port()
        command = command + (["--port", str(port)] if "uvicorn" in command else [])
        print(f"{name}: {' '.join(f'{k}={v}' for k, v in env.items())} {' '.join(command[1:])}", flush=True)
        with server(command, {**env, "PORT": str(port)}, port):
            url = f"http://127.0.0.1:{port}"
            for concurrency in (1, 8, 64):
                report.results.append(measure(name, "digit", url, bodies["digit"], concurrency, args.seconds, work))
            report.results.append(measure(name, "digit x256", url, bodies["digit x256"], 1, args.seconds, work))
            report.results.append(measure(name, "digit x256", url, bodies["digit x256"], 4, args.seconds, work))
            if everything and not args.digits_only:
                report.results.append(measure(name, "digit, OIP binary FP32", url, bodies["digit, OIP binary FP32"], 64,
                                              args.seconds, work))
                report.results.append(measure(name, "sequence strip x10", url, bodies["sequence strip x10"], 8, args.seconds, work))
                report.results.append(measure(name, "digit-sum", url, bodies["digit-sum"], 64, args.seconds, work))

    if args.digits_only:
        report.ratios = ratios(report)
        return report
    print("overload", flush=True)
    port = free_port()
    with server([python, "-m", "app"], {**service_env, "PORT": str(port)}, port) as process:
        url = f"http://127.0.0.1:{port}"
        hey(url, bodies["digit"], work / "body.bin", 8, 1.0)
        before = rss_mb(process.pid)
        rows, wall = hey(url, bodies["digit"], work / "body.bin", 512, args.overload_seconds)
        after = rss_mb(process.pid)
        statuses = Counter(str(status) for _, status in rows)
        check = httpx.post(url + "/predict/digit", content=bodies["digit"].data,
                           headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"}, timeout=10)
        report.overload = {"concurrency": 512, "seconds": args.overload_seconds, "statuses": dict(statuses),
                           "rss_mb_before": round(before, 1), "rss_mb_after": round(after, 1),
                           "right_after_status": check.status_code,
                           "right_after_label": check.json()["predictions"][0]["label"] if check.status_code == 200 else None}
        print(f"  {report.overload}", flush=True)

    report.ratios = ratios(report)
    return report


def _find(report: Report, server_name: str, scenario: str, concurrency: int) -> Result:
    return next(r for r in report.results if (r.server, r.scenario, r.concurrency) == (server_name, scenario, concurrency))


def ratios(report: Report) -> dict[str, float]:
    service64 = _find(report, "service", "digit", 64)
    limit = report.in_process["serving form"]
    reference = "reference (tutorial-style)"
    out = {
        "service / reference p50, single digits at c=1": _find(report, "service", "digit", 1).p50_ms / _find(report, reference, "digit", 1).p50_ms,
        "service / reference req/s, single digits at c=1": _find(report, "service", "digit", 1).rps / _find(report, reference, "digit", 1).rps,
        "service / reference, single digits at c=8": _find(report, "service", "digit", 8).rps / _find(report, reference, "digit", 8).rps,
        "service / reference, single digits at c=64": service64.rps / _find(report, reference, "digit", 64).rps,
        "256-digit request (c=1) / in-process limit": _find(report, "service", "digit x256", 1).digits_per_s / limit,
        "256-digit requests (c=4) / in-process limit": _find(report, "service", "digit x256", 4).digits_per_s / limit,
    }
    if any(r.server == "service, batching off" for r in report.results):
        out["batching on / off, single digits at c=64"] = service64.rps / _find(report, "service, batching off", "digit", 64).rps
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def print_table(report: Report) -> None:
    print("\n| server | scenario | concurrency | requests/s | digits/s | p50 ms | p99 ms | requests | non-200 |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in report.results:
        print(f"| {r.server} | {r.scenario} | {r.concurrency} | {r.rps:.1f} | {r.digits_per_s:.0f} | {r.p50_ms:.1f} | "
              f"{r.p99_ms:.1f} | {r.requests} | {r.errors} |")
    print("\nIn-process digit model, batch 256: " + ", ".join(f"{k} {v:.0f} digits/s" for k, v in report.in_process.items()))
    print(f"Overload: {report.overload}")
    print("\nRatios:")
    for name, value in report.ratios.items():
        print(f"  {name}: {value:.2f}")
    print(f"\nMachine: {report.machine}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR"), help="MNIST IDX folder (default: $MNIST_DATA_DIR)")
    parser.add_argument("--seconds", type=float, default=8.0, help="load per scenario, after a 1 s warm-up")
    parser.add_argument("--overload-seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=None, help="service worker processes (default: usable CPUs)")
    parser.add_argument("--defaults", action="store_true", help="start the service with make serve's defaults "
                        "(WORKERS=auto) instead of WORKERS=--workers")
    parser.add_argument("--digits-only", action="store_true", help="only the service and the reference, single digits "
                        "and the 256-digit request (a quicker comparison)")
    parser.add_argument("--work", default="/tmp/digitserve-bench", help="scratch folder for request bodies")
    parser.add_argument("--json", default=None, help="also write every figure here")
    args = parser.parse_args(argv)
    report = run(args)
    print_table(report)
    if args.json:
        payload = asdict(report)
        for result, raw in zip(report.results, payload["results"], strict=True):
            raw.update(rps=result.rps, digits_per_s=result.digits_per_s)
        Path(args.json).write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
