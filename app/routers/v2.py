"""The Open Inference Protocol (v2) REST routes, as KServe and Triton serve them, so that
``tritonclient``, the ``kserve`` client and platforms built on them can call every model.

Errors follow the protocol (``{"error": ...}``, 400 for a tensor it cannot use, 404 for an
unknown model or version); the limits, batching, metrics and API key are the service's own.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from app.deps import ModelsDep, require_api_key, serving_scope
from app.failures import RequestFailed
from app.oip import HEADER_LENGTH, ProtocolError, encode_response, parse_request
from app.registry import Models
from app.schemas import (
    OipError,
    OipInferRequest,
    OipInferResponse,
    OipLive,
    OipModelMeta,
    OipModelReady,
    OipReady,
    OipServer,
)
from app.v2_models import MODELS, OipModel, check_inputs

SERVER = "digitserve"
PLATFORM = "pytorch"
EXTENSIONS = ["binary_tensor_data"]
# Parsing a few kilobytes of JSON costs less than a hop to the thread pool; a 256-image request does not.
INLINE_PARSE_BYTES = 64 * 1024

health = APIRouter(prefix="/v2", tags=["open inference protocol"])
router = APIRouter(prefix="/v2", tags=["open inference protocol"], dependencies=[Depends(require_api_key)])

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": OipError, "description": "a tensor the model cannot use (`invalid_tensor`), or an image that is not "
                                            "one (`corrupt_image`, `no_digit_found`, ...)"},
    401: {"model": OipError, "description": "API_KEY is set and the request does not carry it"},
    404: {"model": OipError, "description": "no such model, or no such version of it"},
    503: {"model": OipError, "description": "not ready, at capacity or past the deadline; carries Retry-After"},
}
_INFER_ERRORS = {**_ERRORS, 408: {"model": OipError, "description": "the body arrived too slowly"},
                 413: {"model": OipError, "description": "body or images too large"}}
_INFER_OK: dict[int | str, dict[str, Any]] = {
    200: {"description": "the outputs: JSON, or JSON followed by binary tensors (its length in the "
                         f"`{HEADER_LENGTH}` header) when an output was asked for as binary",
          "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
}


def _inlined(schema: Any, definitions: dict[str, Any] | None = None) -> Any:
    """A pydantic JSON schema with its ``$defs`` written in place (the body is documented by
    hand, so its nested models are not among the document's components)."""
    if definitions is None:
        definitions = schema.pop("$defs", {}) if isinstance(schema, dict) else {}
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inlined(dict(definitions[schema["$ref"].rsplit("/", 1)[-1]]), definitions)
        return {key: _inlined(value, definitions) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_inlined(value, definitions) for value in schema]
    return schema


_INFER_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": _inlined(OipInferRequest.model_json_schema())},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"},
                                 "description": f"JSON, then binary tensors: the `{HEADER_LENGTH}` header gives the JSON's length"}}}}


def _model(name: str, version: str | None, models: Models) -> tuple[OipModel, str]:
    """The protocol model and its version; 404 for an unknown name or version."""
    model = MODELS.get(name)
    if model is None:
        raise RequestFailed("not_found", f"unknown model '{name}'; the models: {', '.join(MODELS)}")
    served = models.checkpoints[model.checkpoint].metadata["version"]
    if version is not None and version != served:
        raise RequestFailed("not_found", f"model '{name}' has no version '{version}'; it serves version '{served}'")
    return model, served


@health.get("", response_model=OipServer, summary="Server metadata (Open Inference Protocol)")
async def server_metadata(request: Request) -> OipServer:
    return OipServer(name=SERVER, version=request.app.version, extensions=EXTENSIONS)


@health.get("/health/live", response_model=OipLive, summary="Server liveness (Open Inference Protocol)")
async def server_live() -> OipLive:
    return OipLive(live=True)


@health.get("/health/ready", response_model=OipReady, summary="Server readiness (Open Inference Protocol)",
            responses={503: {"model": OipReady, "description": "models not loaded yet, or shutting down"}})
async def server_ready(request: Request, response: Response) -> OipReady:
    ready = request.app.state.readiness.ready
    if not ready:
        response.status_code = 503
    return OipReady(ready=ready)


async def _metadata(name: str, version: str | None, models: Models) -> OipModelMeta:
    model, served = _model(name, version, models)
    checkpoint = models.checkpoints[model.checkpoint]
    preprocess = checkpoint.preprocess
    return OipModelMeta(name=name, versions=[served], platform=PLATFORM,
                        inputs=[spec.describe() for spec in model.inputs], outputs=[spec.describe() for spec in model.outputs],
                        parameters={"labels": checkpoint.metadata.get("labels", []),
                                    "pixels_mean": preprocess.mean, "pixels_std": preprocess.std})


@router.get("/models/{name}", response_model=OipModelMeta, responses=_ERRORS, summary="Model metadata (Open Inference Protocol)")
async def model_metadata(name: str, models: ModelsDep) -> OipModelMeta:
    return await _metadata(name, None, models)


@router.get("/models/{name}/versions/{version}", response_model=OipModelMeta, responses=_ERRORS,
            summary="Model metadata, one version (Open Inference Protocol)")
async def model_version_metadata(name: str, version: str, models: ModelsDep) -> OipModelMeta:
    return await _metadata(name, version, models)


@router.get("/models/{name}/ready", response_model=OipModelReady, responses=_ERRORS, summary="Model readiness (Open Inference Protocol)")
async def model_ready(name: str, models: ModelsDep) -> OipModelReady:
    _model(name, None, models)
    return OipModelReady(name=name, ready=True)


@router.get("/models/{name}/versions/{version}/ready", response_model=OipModelReady, responses=_ERRORS,
            summary="Model readiness, one version (Open Inference Protocol)")
async def model_version_ready(name: str, version: str, models: ModelsDep) -> OipModelReady:
    _model(name, version, models)
    return OipModelReady(name=name, ready=True)


async def _infer(name: str, version: str | None, request: Request) -> Response:
    body = await request.body()
    header = request.headers.get(HEADER_LENGTH)
    async with serving_scope(request) as serving:
        model, served = _model(name, version, serving.models)
        try:
            parsed = parse_request(body, header) if len(body) <= INLINE_PARSE_BYTES else \
                await run_in_threadpool(parse_request, body, header)
        except ProtocolError as error:
            raise RequestFailed("invalid_tensor", str(error)) from None
        check_inputs(name, model, parsed.inputs)
        names = [spec.name for spec in model.outputs]
        unknown = [n for n in (parsed.outputs or {}) if n not in names]
        if unknown:
            raise RequestFailed("invalid_tensor", f"model '{name}' has no output '{unknown[0]}'; its outputs: {', '.join(names)}")
        tensors = await model.run(parsed.inputs, serving, f"/v2/models/{name}/infer")
    wanted = parsed.outputs if parsed.outputs is not None else {n: parsed.binary_default for n in names}
    by_name = {tensor.name: tensor for tensor in tensors}
    content, json_length = encode_response(name, served, parsed.id, [by_name[n] for n in wanted], wanted)  # in the order asked
    if json_length is None:
        return Response(content, media_type="application/json")
    return Response(content, media_type="application/octet-stream", headers={HEADER_LENGTH: str(json_length)})


@router.post("/models/{name}/infer", response_model=OipInferResponse, responses={**_INFER_OK, **_INFER_ERRORS},
             openapi_extra=_INFER_BODY, summary="Inference (Open Inference Protocol)")
async def infer(name: str, request: Request) -> Response:
    return await _infer(name, None, request)


@router.post("/models/{name}/versions/{version}/infer", response_model=OipInferResponse,
             responses={**_INFER_OK, **_INFER_ERRORS}, openapi_extra=_INFER_BODY,
             summary="Inference, one version (Open Inference Protocol)")
async def infer_version(name: str, version: str, request: Request) -> Response:
    return await _infer(name, version, request)

