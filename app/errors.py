"""One error shape for every failure: ``{"detail": "<what went wrong>", "code": "<stable code>"}``;
under ``/v2/`` the Open Inference Protocol's ``{"error": "<what went wrong>", "code": ...}``.

Routes raise ``ApiError`` with a status, a code clients can branch on, and a message people can
read. FastAPI's validation errors and Starlette's HTTP errors are mapped to the same shape; any
other exception is logged with its traceback and answered with a generic 500.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("app.errors")

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 408: "request_timeout",
               413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_request", 503: "not_ready"}


RETRY_AFTER = {"Retry-After": "1"}


class ApiError(Exception):
    """An error the client caused or should know about, with its HTTP status and stable code."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


OIP_PREFIX = "/v2/"


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


async def _api_error(request: Request, error: ApiError) -> JSONResponse:
    return JSONResponse(error_body(error.code, error.detail, request.url.path), status_code=error.status, headers=error.headers)


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
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
