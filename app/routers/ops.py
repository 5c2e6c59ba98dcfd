"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.deps import MetricsDep
from app.errors import HEADERS, error_body
from app.schemas import Error, Status

router = APIRouter(tags=["operations"])
# Metrics get their own router: behind the API key when one is set, unlike health and readiness.
metrics_router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Status, summary="Liveness: the process answers")
async def healthz() -> Status:
    return Status(status="ok")


@router.get("/readyz", response_model=Status, summary="Readiness: every model loaded and warmed up",
            responses={503: {"model": Error, "description": "starting up or shutting down"}})
async def readyz(request: Request) -> Response:
    if not request.app.state.readiness.ready:
        return JSONResponse(error_body("not_ready", "models not loaded, or shutting down"), status_code=503,
                            headers=HEADERS["not_ready"])
    return JSONResponse({"status": "ready"})


@metrics_router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
async def metrics(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
