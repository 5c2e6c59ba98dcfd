"""Dependencies the routes declare with ``Annotated``: settings, loaded models, metrics, for
predictions all of those with the engine and the request's deadline (``Serving``), and the
optional API key (``require_api_key``).

All are ``async def``: they only read state, and FastAPI runs a plain ``def`` dependency in the
thread pool, a round trip per dependency per request that cost more than the whole forward pass.
"""

from __future__ import annotations

import asyncio
import hmac
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.engine import Engine
from app.failures import RequestFailed
from app.observability import Metrics
from app.registry import Models
from app.settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def get_models(request: Request) -> Models:
    """The loaded models; 503 for a request that arrived while the service was not ready
    (starting, or shutting down: see ``app.middleware.Admission``)."""
    if not getattr(request.state, "admitted", False):
        raise RequestFailed("not_ready", "the models are not loaded yet, or the service is shutting down")
    return request.state.models


@dataclass(frozen=True)
class Serving:
    """Everything a prediction needs, as one dependency: the loaded models, the engine that runs
    them, the settings, the metrics, when this request stops being worth answering (its
    arrival, as stamped by ``Admission``, plus REQUEST_TIMEOUT_SECONDS, in ``time.monotonic()``),
    and whether the client has gone away (set from the event loop, read between images on
    whichever thread decodes them)."""

    models: Models
    engine: Engine
    settings: Settings
    metrics: Metrics
    deadline: float
    disconnected: threading.Event = field(default_factory=threading.Event)


async def _watch_for_disconnect(request: Request, disconnected: threading.Event) -> None:
    """The body is read by now, so the next message the server sends is the client leaving."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            disconnected.set()
            return


@asynccontextmanager
async def serving_scope(request: Request) -> AsyncIterator[Serving]:
    """The ``Serving`` of a request whose body has been read (the watcher takes every message
    the server sends from then on). A route that reads its own body (``/v2/.../infer``) enters
    it after reading; the others get it as ``ServingDep``. 503 for a request that arrived while
    the service was not ready."""
    models = await get_models(request)
    settings: Settings = request.app.state.settings
    serving = Serving(models, request.state.engine, settings, request.app.state.metrics,
                      request.state.arrived + settings.request_timeout_seconds)
    watcher = asyncio.create_task(_watch_for_disconnect(request, serving.disconnected))
    try:
        yield serving
    finally:
        watcher.cancel()


async def get_serving(request: Request) -> AsyncIterator[Serving]:
    """For the multipart routes, whose form FastAPI reads before it resolves dependencies."""
    async with serving_scope(request) as serving:
        yield serving


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ModelsDep = Annotated[Models, Depends(get_models)]
ServingDep = Annotated[Serving, Depends(get_serving)]


# The API key: off unless ``API_KEY`` is set, then required on predictions, models and metrics
# (health, readiness and the docs stay open). Sent as ``Authorization: Bearer <key>`` or
# ``X-API-Key: <key>``, compared in constant time, never logged. auto_error=False: the schemes
# document themselves in OpenAPI ("Authorize" in /docs) while this module decides, so a missing
# key gets our error shape rather than FastAPI's.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API_KEY>")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <API_KEY>")


async def require_api_key(
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> None:
    if settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value().encode()
    offered = (bearer.credentials if bearer else header or "").encode()
    if not hmac.compare_digest(offered, expected):
        raise RequestFailed("unauthorized", "missing or invalid API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
