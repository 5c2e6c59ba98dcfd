"""Run the service as a real process, the way ``make serve`` does (``python -m app``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.conftest import ROOT


@dataclass
class Service:
    process: subprocess.Popen[str]
    url: str
    lines: list[str] = field(default_factory=list)

    def read_until(self, text: str) -> str:
        """Block until the service logs a line containing ``text`` (or fail if it exits first)."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"the service exited before logging {text!r}:\n" + "".join(self.lines))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_service(**env: str) -> Iterator[Service]:
    """Start ``python -m app`` on a free port and return once uvicorn says it is serving."""
    port = free_port()
    environment = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "DEVICE": "cpu", "PYTHONUNBUFFERED": "1", **env}
    process = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    service = Service(process, f"http://127.0.0.1:{port}")
    try:
        service.read_until("Uvicorn running on")
        yield service
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
