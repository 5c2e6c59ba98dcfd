"""Run the service as a real process, the way ``make serve`` does (``python -m app``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tests.conftest import ROOT


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
