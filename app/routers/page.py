"""The page at ``/`` for people: draw a digit or drop an image, see what the models read.

Plain HTML, CSS and JavaScript from ``app/static`` (no build step, no CDN: it works offline),
calling the same REST routes as any client.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(include_in_schema=False)
static_files = StaticFiles(directory=STATIC)


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")
