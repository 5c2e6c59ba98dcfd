"""Dependencies the routes declare with ``Annotated``: settings, loaded models, metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.errors import ApiError
from app.observability import Metrics
from app.registry import Models
from app.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def get_models(request: Request) -> Models:
    """The loaded models; 503 for a request that arrived while the service was not ready
    (starting, or shutting down: see ``AdmissionStamp``)."""
    if not getattr(request.state, "admitted", False):
        raise ApiError(503, "not_ready", "the models are not loaded yet, or the service is shutting down",
                       headers={"Retry-After": "1"})
    return request.state.models


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ModelsDep = Annotated[Models, Depends(get_models)]
