"""Per-request logging, request ids and Prometheus metrics, in one ASGI middleware.

A pure ASGI middleware (not ``BaseHTTPMiddleware``) so it adds no task or copy per request. It
also enforces the body-size limit before a byte of an oversized upload is parsed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_body

log = logging.getLogger("app.access")


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (one per app instance)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("http_requests_total", "HTTP requests", ["method", "endpoint", "status"], registry=self.registry)
        self.latency = Histogram("http_request_duration_seconds", "HTTP request latency", ["method", "endpoint", "status"],
                                 buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=self.registry)
        self.inference = Histogram("inference_duration_seconds", "time in the models (preprocessing excluded)", ["model"],
                                   buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1), registry=self.registry)
        self.batch_size = Histogram("inference_batch_size", "images per forward pass", ["model"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=self.registry)
        self.batch_requests = Histogram("inference_batch_requests", "requests sharing one forward pass", ["model"],
                                        buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=self.registry)
        self.queue_wait = Histogram("inference_queue_wait_seconds", "time a request waits in its model's queue before "
                                    "its batch starts", ["model"],
                                    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5, 10),
                                    registry=self.registry)
        self.queue_depth = Gauge("inference_queue_depth", "images waiting for a forward pass", ["model"], registry=self.registry)
        self.in_flight = Gauge("prediction_requests_in_flight", "prediction requests being served", registry=self.registry)
        self.rejected = Counter("prediction_requests_rejected_total", "prediction requests answered 503 at once",
                                ["reason"], registry=self.registry)
        self.images = Counter("images_processed_total", "images decoded and preprocessed", ["endpoint"], registry=self.registry)


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
                await self._reject(send_with_id, error, scope["path"])
        finally:
            self._record(scope, status, started, request_id)

    async def _reject(self, send: Send, error: HTTPException, path: str) -> None:
        code = "payload_too_large" if error.status_code == 413 else "request_timeout"
        body = json.dumps(error_body(code, str(error.detail), path)).encode()
        await send({"type": "http.response.start", "status": error.status_code,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

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
