"""What can go wrong with a request, as the serving core says it: a stable code and a message
for people, nothing about HTTP. ``app.errors`` is the one place that turns codes into statuses.
"""

from __future__ import annotations


class RequestFailed(Exception):
    """This request cannot be answered: ``code`` is what clients branch on (``no_digit_found``,
    ``overloaded``, ...), ``detail`` says why in words."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail
