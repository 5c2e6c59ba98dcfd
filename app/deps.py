"""Dependencies the routes declare with ``Annotated``: settings, loaded models, the engine that
runs them, metrics, and the request's deadline.

All are ``async def``: they only read state, and FastAPI runs a plain ``def`` dependency in the
thread pool, a round trip per dependency per request that cost more than the whole forward pass.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.engine import Engine
from app.errors import ApiError
from app.observability import Metrics
from app.registry import Models
from app.settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def get_models(request: Request) -> Models:
    """The loaded models; 503 for a request that arrived while the service was not ready
    (starting, or shutting down: see ``app.main.Admission``)."""
    if not getattr(request.state, "admitted", False):
        raise ApiError(503, "not_ready", "the models are not loaded yet, or the service is shutting down",
                       headers={"Retry-After": "1"})
    return request.state.models


async def get_engine(request: Request, _: Annotated[Models, Depends(get_models)]) -> Engine:
    """The engine (batchers and inference thread); only for requests admitted while ready."""
    return request.state.engine


async def get_deadline(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> float:
    """When this request stops being worth answering (``time.monotonic()``): its arrival, as
    stamped by ``Admission``, plus REQUEST_TIMEOUT_SECONDS."""
    return request.state.arrived + settings.request_timeout_seconds


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ModelsDep = Annotated[Models, Depends(get_models)]
EngineDep = Annotated[Engine, Depends(get_engine)]
DeadlineDep = Annotated[float, Depends(get_deadline)]
