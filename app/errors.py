"""The one place failures become HTTP: each ``RequestFailed`` code's status and headers, and one
error shape for every failure: ``{"detail": "<what went wrong>", "code": "<stable code>"}``;
under ``/v2/`` the Open Inference Protocol's ``{"error": "<what went wrong>", "code": ...}``,
with 400 for any input the model cannot use, as the protocol says.

FastAPI's validation errors and Starlette's HTTP errors are mapped to the same shape; any other
exception is logged with its traceback and answered with a generic 500.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.failures import RequestFailed

log = logging.getLogger("app.errors")

OIP_PREFIX = "/v2/"
_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 408: "request_timeout",
               413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_request", 503: "not_ready"}


RETRY_AFTER = {"Retry-After": "1"}
# Every code the service answers with, and its status.
STATUS = {
    "invalid_tensor": 400, "unauthorized": 401, "not_found": 404,
    "image_too_large": 413, "unsupported_media_type": 415,
    "invalid_request": 422, "empty_file": 422, "corrupt_image": 422, "no_digit_found": 422, "no_garment_found": 422,
    "too_many_images": 422, "too_many_digits": 422, "invalid_number": 422, "number_out_of_range": 422,
    "client_disconnected": 499,
    "not_ready": 503, "overloaded": 503, "deadline_exceeded": 503,
}
HEADERS = {"unauthorized": {"WWW-Authenticate": "Bearer"}, "not_ready": RETRY_AFTER, "overloaded": RETRY_AFTER,
           "deadline_exceeded": RETRY_AFTER}


def status_of(code: str, path: str = "") -> int:
    """The HTTP status of a failure code on a route: the Open Inference Protocol answers 400 for
    any input the model cannot use (what the other routes call 415 or 422)."""
    status = STATUS[code]
    if path.startswith(OIP_PREFIX) and status in (415, 422):
        return 400
    return status


def error_body(code: str, detail: str, path: str = "") -> dict[str, str]:
    """The error's JSON: ours, or the Open Inference Protocol's for its routes (``path``)."""
    if path.startswith(OIP_PREFIX):
        return {"error": detail, "code": code}
    return {"detail": detail, "code": code}


def _describe(error: dict) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query", "header"))
    if error.get("type") == "missing":
        return f"missing field '{where}'"
    return f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid"))


async def _request_failed(request: Request, error: RequestFailed) -> JSONResponse:
    path = request.url.path
    return JSONResponse(error_body(error.code, error.detail, path), status_code=status_of(error.code, path),
                        headers=HEADERS.get(error.code))


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    detail = "; ".join(_describe(e) for e in error.errors()) or "invalid request"
    return JSONResponse(error_body("invalid_request", detail, request.url.path), status_code=422)


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(error.status_code, "http_error")
    return JSONResponse(error_body(code, str(error.detail), request.url.path), status_code=error.status_code,
                        headers=getattr(error, "headers", None))


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(error_body("internal_error", "internal server error", request.url.path), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestFailed, _request_failed)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
