"""Optional API key: off unless ``API_KEY`` is set, then required on predictions, models and
metrics (health, readiness and the docs stay open). Sent as ``Authorization: Bearer <key>`` or
``X-API-Key: <key>``, compared in constant time, never logged."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.deps import SettingsDep
from app.failures import RequestFailed

# auto_error=False: the schemes document themselves in OpenAPI ("Authorize" in /docs) while
# this module decides, so a missing key gets our error shape rather than FastAPI's.
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
