"""Decoded pixels as a budget the service enforces, so memory is bounded by settings, not by
what clients send.

A request's uploads declare their pixels in their headers (``app.imaging.open_image``), read
before any is decoded. A request declaring more than ``MAX_REQUEST_PIXELS`` is refused (413
``image_too_large``); one that would take this worker's requests in flight past
``MAX_INFLIGHT_PIXELS`` is turned away at once (503 ``overloaded`` with ``Retry-After``). The
pixels are held until the request's answer is sent or it is abandoned. Both run on the event
loop, so the count needs no lock.

Small requests (a few digits, a photo under a megapixel: what almost every client sends) have
headroom above the limit, a twentieth of it: a burst of huge uploads that fills the budget turns
away other huge uploads, not the ordinary requests queued behind them.

When the last large request lets go, the C allocator is asked to give its free pages back
(glibc's ``malloc_trim``): decoding leaves large freed blocks that glibc otherwise keeps, so a
worker's memory would stay at its peak after a burst.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterator
from contextlib import contextmanager

from app.failures import RequestFailed

# Release this many pixels or more and the allocator is trimmed once nothing is in flight.
TRIM_AFTER_PIXELS = 4_000_000
# A small request: at most this many declared pixels (a few digits, a photo under a megapixel).
# It may use the headroom above the limit, and a decode-in-batch handler decodes it on the
# inference thread (``app.engine``); a larger one takes tens of milliseconds to decode and does
# so in the thread pool.
SMALL_REQUEST_PIXELS = 1_000_000
HEADROOM_SHARE = 0.05


def _load_malloc_trim():  # glibc only; elsewhere trimming is skipped
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _load_malloc_trim()


class PixelBudget:
    """This worker's decoded pixels in flight, against ``limit``."""

    def __init__(self, per_request: int, limit: int, small: int = SMALL_REQUEST_PIXELS) -> None:
        self.per_request, self.limit, self.small = per_request, limit, small
        self.headroom = max(small, int(HEADROOM_SHARE * limit))
        self.in_flight = 0
        self._released = 0  # pixels let go since the allocator was last trimmed

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Hold ``pixels`` for the duration of a request, or refuse it (413 / 503)."""
        if pixels > self.per_request:
            raise RequestFailed("image_too_large",
                           f"the request's images hold {pixels:,} pixels; the limit is {self.per_request:,} per request")
        ceiling = self.limit + (self.headroom if pixels <= self.small else 0)
        if self.in_flight and self.in_flight + pixels > ceiling:
            raise RequestFailed("overloaded", "the service is decoding as many pixels as it may; retry shortly")
        self.in_flight += pixels
        try:
            yield
        finally:
            self.in_flight -= pixels
            self._released += pixels
            if self.in_flight == 0 and self._released >= TRIM_AFTER_PIXELS and _MALLOC_TRIM is not None:
                _MALLOC_TRIM(0)
                self._released = 0
