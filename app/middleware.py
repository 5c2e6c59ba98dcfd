"""The ASGI middlewares, outermost first: ``RequestObserver`` (request id, access log, request
metrics, the body's size limit and deadline) and ``Admission`` (readiness and the bound on
predictions in flight, before a byte of the body is read).

Pure ASGI classes (not ``BaseHTTPMiddleware``): no task or copy per request. Their refusals are
Starlette ``JSONResponse``s in the service's one error shape.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import HEADERS, OIP_PREFIX, error_body, status_of
from app.observability import Metrics

log = logging.getLogger("app.access")


@dataclass
class Readiness:
    """True once every model is loaded and warmed up; False again from the shutdown signal on
    (the server flips it, see app/__main__.py) and after the lifespan ends."""

    ready: bool = False


def is_prediction(path: str) -> bool:
    """The routes that run a model: ours, and the Open Inference Protocol's ``.../infer``."""
    return path.startswith("/predict/") or (path.startswith(OIP_PREFIX) and path.endswith("/infer"))


class Admission:
    """The door of the prediction routes, before a byte of the body is read.

    It stamps each request with its arrival time (deadlines count from it) and with whether the
    service was ready then: a request that arrived before the shutdown signal is answered even if
    its upload is still coming in when the signal lands; one that arrives after it gets a 503.
    And it bounds the requests in flight: past ``max_pending`` it answers 503 with Retry-After
    at once, so overload costs a rejected request, not unbounded latency for everyone.
    """

    def __init__(self, app: ASGIApp, readiness: Readiness, metrics: Metrics, max_pending: int) -> None:
        self.app, self.readiness, self.metrics, self.max_pending = app, readiness, metrics, max_pending
        self.pending = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["admitted"], state["arrived"] = self.readiness.ready, time.monotonic()
        if not is_prediction(scope["path"]):
            await self.app(scope, receive, send)
            return
        if self.pending >= self.max_pending:
            self.metrics.rejected.labels("overloaded").inc()
            reply = JSONResponse(error_body("overloaded", "the service is at capacity; retry shortly", scope["path"]),
                                 status_code=status_of("overloaded"), headers=HEADERS["overloaded"])
            await reply(scope, receive, send)
            return
        self.pending += 1
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.pending -= 1
            self.metrics.in_flight.dec()


class _TooLarge(HTTPException):
    """Raised from ``receive`` once a streamed body passes the limit; FastAPI re-raises HTTP
    exceptions from body parsing, so the error handlers answer it as a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")


class _SlowBody(HTTPException):
    """Raised from ``receive`` when the body has not all arrived ``body_timeout`` seconds after
    the request began: a client trickling its upload a few bytes a second holds a connection
    and a task, and is cut off (408) instead."""

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"the request body did not arrive within {seconds:g} s")


class RequestObserver:
    """Request id (``X-Request-ID``, echoed or made), one structured log line per request,
    request counts and latency by endpoint and status, the request body limit (413) and the
    body-read deadline (408)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int, body_timeout: float = 30.0) -> None:
        self.app, self.metrics, self.max_body, self.body_timeout = app, metrics, max_body_bytes, body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:128] or uuid.uuid4().hex
        status = 500
        sent_start = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent_start
            if message["type"] == "http.response.start":
                status, sent_start = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        received = 0
        body_deadline = time.monotonic() + self.body_timeout
        body_done = False

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # later calls only wait for the client to go away: no deadline
                return await receive()
            try:
                async with asyncio.timeout(max(body_deadline - time.monotonic(), 0.0)):
                    message = await receive()
            except TimeoutError:
                raise _SlowBody(self.body_timeout) from None
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _TooLarge(self.max_body)
            return message

        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            declared = 0
        try:
            if declared > self.max_body:
                raise _TooLarge(self.max_body)
            await self.app(scope, limited_receive, send_with_id)
        except (_TooLarge, _SlowBody) as error:
            if not sent_start:
                code = "payload_too_large" if error.status_code == 413 else "request_timeout"
                reply = JSONResponse(error_body(code, str(error.detail), scope["path"]), status_code=error.status_code,
                                     headers={"Connection": "close"})
                await reply(scope, receive, send_with_id)
        finally:
            self._record(scope, status, started, request_id)

    def _record(self, scope: Scope, status: int, started: float, request_id: str) -> None:
        duration = time.perf_counter() - started
        route = scope.get("route")
        endpoint = getattr(route, "path", None) or "unmatched"
        labels = (scope["method"], endpoint, str(status))
        self.metrics.requests.labels(*labels).inc()
        self.metrics.latency.labels(*labels).observe(duration)
        if log.isEnabledFor(logging.INFO):  # LOG_LEVEL=warning skips the line and its formatting
            fields: dict[str, Any] = {"event": "request", "method": scope["method"], "path": scope["path"], "status": status,
                                      "duration_ms": round(duration * 1000, 2), "request_id": request_id}
            log.info(json.dumps(fields))
