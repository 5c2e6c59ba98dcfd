"""uvicorn's HTTP protocol, with silent new connections closed as idle kept-alive ones are.

uvicorn closes a kept-alive connection that stays silent for ``timeout_keep_alive``
(``KEEP_ALIVE_SECONDS``) after a response, but a connection that never sends its first request
stays open for ever: a client can hold hundreds of them, each a file descriptor and a buffer. This
protocol starts the same timer when a connection opens, so a connection silent for
``KEEP_ALIVE_SECONDS`` is closed whether or not it has sent a request. The parser is uvicorn's
own choice (httptools when installed, else h11). ``app/__main__.py`` selects it with uvicorn's
``http`` option.
"""

from __future__ import annotations

import asyncio

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Protocol
except ImportError:  # uvicorn without its [standard] extra
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Protocol  # type: ignore[assignment]


class SilentConnectionsClose(_Protocol):  # type: ignore[misc, valid-type]
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # The first byte received cancels it (``data_received``), as for a kept-alive connection.
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)
