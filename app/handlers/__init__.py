"""One handler per model endpoint (``base.Handler``: decode, predict, encode); the engine runs
them, ``app.catalog`` says which checkpoint each answers with."""

from app.handlers.base import Handler
from app.handlers.uploads import Images, Upload

__all__ = ["Handler", "Images", "Upload"]
