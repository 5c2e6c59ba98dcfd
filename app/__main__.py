"""``python -m app``: serve ``app.main:app`` with uvicorn, host and port from the settings.

On SIGTERM (or Ctrl-C) the service turns not ready at once (``/readyz`` and predictions answer
503), keeps answering for ``SHUTDOWN_DRAIN_SECONDS`` so load balancers stop sending traffic,
then stops accepting connections, lets in-flight requests finish within
``SHUTDOWN_TIMEOUT_SECONDS``, and exits 0, as PID 1 in a container too.
"""

from __future__ import annotations

import contextlib
import logging
import logging.config
import os
import signal
import threading
import time
from collections.abc import Generator
from types import FrameType
from typing import Any

import uvicorn

from app.main import create_app
from app.middleware import Readiness
from app.settings import Settings

log = logging.getLogger("app")


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a readiness flag that drops on the first signal, and a clean exit."""

    def __init__(self, config: uvicorn.Config, readiness: Readiness, drain_seconds: float) -> None:
        super().__init__(config)
        self.readiness, self.drain_seconds = readiness, drain_seconds
        self.drain_until: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_until is None:
            self.readiness.ready = False
            self.drain_until = time.monotonic() + self.drain_seconds
            log.info("signal %s: not ready; draining for %.1f s, then shutting down", signal.Signals(sig).name, self.drain_seconds)
            if self.drain_seconds > 0:
                return  # on_tick ends the drain
        super().handle_exit(sig, frame)  # a second signal during the drain stops at once

    async def on_tick(self, counter: int) -> bool:
        if self.drain_until is not None and time.monotonic() >= self.drain_until:
            self.should_exit = True
        return await super().on_tick(counter)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Like uvicorn's, without re-raising the signal afterwards: a service stopped on
        purpose and drained cleanly exits 0, not by the signal."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)


def log_config(level: str) -> dict[str, Any]:
    """One line per record on stderr, for the app's loggers and uvicorn's alike. Handed to
    uvicorn, which applies it in every worker process it spawns (a spawned worker does not
    inherit the parent's logging)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {name: {"handlers": [], "propagate": True} for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
    }


def share_cores() -> None:
    """Workers that share the cores wait passively between torch's parallel regions.

    By default libgomp's idle workers spin for a while after each region, which is what a lone
    process wants (the line reader's LSTM runs hundreds of small regions per strip). Processes
    sharing the cores spin away each other's CPU time instead: with two workers on 2 cores, each
    running a 256-digit pass on both cores, the pair answered at 0.3-0.35 of the in-process rate
    spinning, and at 0.84-1.00 waiting passively (docs/performance.md). Set in the environment the
    spawned workers inherit, before their OpenMP runtime starts; an OMP_WAIT_POLICY already set
    is kept."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main() -> None:
    settings = Settings()
    logging.config.dictConfig(log_config(settings.log_level))
    options = dict(
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=log_config(settings.log_level),  # applied in each worker process too
        access_log=False,  # app.observability writes one structured line per request instead
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
        timeout_keep_alive=settings.keep_alive_seconds,
        http="app.connections:SilentConnectionsClose",  # silent connections close too
    )
    workers = settings.worker_count
    log.info("starting %d worker%s (WORKERS=%s)", workers, "s" * (workers > 1), settings.workers)
    if workers > 1:
        share_cores()
        # uvicorn's supervisor forwards the signal to each worker, which drains without the delay.
        uvicorn.run("app.main:app", workers=workers, **options)
        return
    app = create_app(settings)
    server = DrainingServer(uvicorn.Config(app, **options), app.state.readiness, settings.shutdown_drain_seconds)
    server.run()


if __name__ == "__main__":
    main()
