"""Servers as real processes on loopback: the service as ``make serve`` starts it
(``python -m app``), or any server command; shared by the tests, the benchmark and the scripts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


class Service:
    """A running ``python -m app``. Its output is drained on a thread as it comes: a pipe left
    unread fills up (the access log writes a line per request) and would block the server."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process, self.url = process, url
        self.lines: list[str] = []
        self._seen = 0
        self._closed = False
        self._changed = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def read_until(self, text: str, timeout: float = 120) -> str:
        """Wait for the next log line containing ``text`` (fail if the service exits first)."""
        def found() -> int | None:
            return next((i for i in range(self._seen, len(self.lines)) if text in self.lines[i]), None)

        with self._changed:
            self._changed.wait_for(lambda: found() is not None or self._closed, timeout=timeout)
            index = found()
            if index is None:
                raise AssertionError(f"the service never logged {text!r}:\n" + "".join(self.lines))
            self._seen = index + 1
            return self.lines[index]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_service(**env: str) -> Iterator[Service]:
    """Start ``python -m app`` on a free port and return once uvicorn says it is serving: one
    worker unless ``WORKERS`` is given (the default, ``auto``, would start one per CPU)."""
    port = free_port()
    environment = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "DEVICE": "cpu", "PYTHONUNBUFFERED": "1", "WORKERS": "1", **env}
    # A session of its own: with several workers, killing the supervisor alone would leave its
    # workers running (and holding memory) after the test; the whole group is killed instead.
    process = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    service = Service(process, f"http://127.0.0.1:{port}")
    try:
        service.read_until("Uvicorn running on")
        yield service
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=30)


@contextmanager
def server(command: list[str], env: dict[str, str], port: int, cwd: Path = ROOT, ready: tuple[int, ...] = (200, 404),
           start_seconds: float = 120) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server process (in ``cwd``) and wait until ``/readyz`` answers one of ``ready``
    (404: the reference server has none); stop it (SIGTERM) afterwards."""
    process = subprocess.Popen(command, cwd=cwd, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_seconds
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command} exited with {process.returncode}")
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code in ready:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command} not ready after {start_seconds:.0f} s")
            time.sleep(0.2)
        yield process
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)


@contextmanager
def one_worker(root: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``python -m app`` from the checkout at ``root``: one worker, on the CPU, quiet logs;
    yields its URL and process."""
    port = free_port()
    env = {"WORKERS": "1", "LOG_LEVEL": "warning", "DEVICE": "cpu", "PORT": str(port), "PYTHONPATH": str(root)}
    with server([sys.executable, "-m", "app"], env, port, cwd=root) as process:
        yield f"http://127.0.0.1:{port}", process


def rss_mb(root_pid: int) -> float:
    """Resident memory of a process and its children (uvicorn's workers), in MB."""
    total, pids = 0.0, [root_pid]
    children = Path(f"/proc/{root_pid}/task/{root_pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except FileNotFoundError:
            pass
    return total
