"""``python -m app``: serve ``app.main:app`` with uvicorn, host and port from the settings."""

from __future__ import annotations

import logging

import uvicorn

from app.settings import Settings


def main() -> None:
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(
        "app.main:app",
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        log_config=None,  # the logging configured above, for uvicorn's loggers too
        access_log=False,  # app.observability writes one structured line per request instead
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    main()
