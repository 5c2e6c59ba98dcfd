"""The ASGI application, ``app.main:app``.

``create_app`` builds it from a ``Settings``; the lifespan loads and warms the models once and
hands them to requests as lifespan state, with a readiness flag that ``/readyz`` and the
prediction routes consult.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from app import tuning
from app.catalog import CATALOG, ModelSpec
from app.deps import require_api_key
from app.engine import LARGE_BATCH, Engine, inference_thread
from app.errors import install_error_handlers
from app.middleware import Admission, Readiness, RequestObserver
from app.observability import Metrics
from app.registry import load_models
from app.routers import models, ops, page, predict, v2
from app.settings import Settings
from model.checkpoint import CheckpointError

log = logging.getLogger("app")

DESCRIPTION = """
Handwritten-digit models trained on MNIST, and a garment classifier trained on Fashion-MNIST, served over HTTP.

* **/predict/digit**: one or many digit images -> labels with probabilities.
* **/predict/sequence**: a strip of digits, or the digit images in order -> P(the sequence contains a 4)
  from a CNN-LSTM, plus the digits read.
* **/predict/digit-sum**: a digit image and an integer -> the digit and the sum, from one two-input network.
* **/predict/fashion**: one or many garment images -> Fashion-MNIST class names with probabilities.

Uploads are `multipart/form-data`: PNG, JPEG, BMP, GIF, WebP or TIFF of any size, in either polarity.
Every error is JSON: `{"detail": "...", "code": "..."}`.
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    settings: Settings = app.state.settings
    readiness: Readiness = app.state.readiness
    inference = inference_thread()
    try:
        loaded = await asyncio.get_running_loop().run_in_executor(
            inference, load_models, settings.weights_dir, settings.device, app.state.catalog)
    except BaseException as error:
        inference.shutdown()
        if isinstance(error, (CheckpointError, RuntimeError)):
            log.critical("refusing to start: %s", error)
        raise
    engine = Engine(loaded, [spec.handler for spec in loaded.catalog.values()], settings, app.state.metrics, inference)
    engine.start()
    tuning.freeze_startup_objects()
    readiness.ready = True
    log.info("ready: %d models on %s, torch threads %d (%d for batches of %d+ images), batching %s", len(loaded.checkpoints),
             loaded.device, engine.threads.small, engine.threads.large, LARGE_BATCH,
             f"up to {settings.batch_max_size} images / {settings.batch_max_wait_ms} ms" if settings.batching else "off")
    try:
        yield {"models": loaded, "engine": engine}
    finally:
        readiness.ready = False
        log.info("shutting down")
        await engine.stop()
        tuning.thaw()


def create_app(settings: Settings | None = None, catalog: Mapping[str, ModelSpec] = CATALOG) -> FastAPI:
    """The app serving ``catalog``'s models (every model of the service unless told otherwise)."""
    settings = settings or Settings()
    app = FastAPIOffline(
        title="digitserve",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        favicon_url=None,
    )
    app.state.settings = settings
    app.state.catalog = catalog
    app.state.readiness = Readiness()
    app.state.metrics = Metrics()
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "X-API-Key", "X-Request-ID", "Content-Type"])
    app.add_middleware(Admission, readiness=app.state.readiness, metrics=app.state.metrics,
                       max_pending=settings.max_pending_requests)
    app.add_middleware(RequestObserver, metrics=app.state.metrics, max_body_bytes=settings.max_body_bytes,
                       body_timeout=settings.body_timeout_seconds)
    guarded = [Depends(require_api_key)]
    app.include_router(predict.router, dependencies=guarded)
    app.include_router(models.router, dependencies=guarded)
    app.include_router(ops.metrics_router, dependencies=guarded)
    app.include_router(v2.router)
    app.include_router(ops.router)
    app.include_router(v2.health)
    app.include_router(page.router)
    app.mount("/static", page.static_files, name="static")
    return app


app = create_app()
