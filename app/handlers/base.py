"""What every endpoint's handler is, and the steps they share.

A handler serves one model endpoint in LitServe's three steps, with no HTTP in any of them:

- ``decode(inputs, opened, serving) -> payload``: the request's uploads (opened from their
  headers by ``open``, on the event loop) decoded and preprocessed into what the model reads.
  ``decode_in_batch`` says where it runs: on the inference thread, inside the batch (cheap single
  digits: a hop to the thread pool would cost more than the work), or in the thread pool before
  the request joins its batch (strips, sequences).
- ``predict(models, payloads) -> outputs``: one forward pass over the payloads of every request
  in a batch, one output per payload.
- ``encode(payload, output, models) -> body``: the response body of one request.

The engine (``app.engine``) runs them; a handler never calls a model outside ``predict``. The
steps uploads share (open, decode, stop when abandoned) are ``app.handlers.uploads``'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

from PIL import Image

from app.settings import Settings

if TYPE_CHECKING:
    from app.deps import Serving
    from app.registry import Models

I = TypeVar("I")  # noqa: E741  what the route hands over
P = TypeVar("P")  # what the model reads, per request
O = TypeVar("O")  # noqa: E741  what the model gives, per request


class Handler(Generic[I, P, O]):
    """One endpoint: ``name`` (the engine's key, and the model label of the metrics), the
    checkpoint it answers with (``model``, whose name and version go in every response), and
    its three steps."""

    name: str
    model: str
    decode_in_batch: bool = False

    def open(self, inputs: I, settings: Settings) -> list[Image.Image]:
        """The request's uploads opened from their headers (nothing decoded): their declared
        pixels are what the request asks of the pixel budget. Runs on the event loop."""
        return []

    def decode(self, inputs: I, opened: list[Image.Image], serving: Serving) -> P:
        raise NotImplementedError

    def count(self, inputs: I) -> int:
        """Images the request holds, before decoding: what it counts for in its model's queue."""
        return 1

    def size(self, payload: P) -> int:
        """Images in a payload: what it counts for in a batch."""
        return 1

    def predict(self, models: Models, payloads: list[P]) -> list[O]:
        raise NotImplementedError

    def encode(self, payload: P, output: O, models: Models) -> dict[str, Any]:
        raise NotImplementedError

    def warm_up(self, models: Models) -> None:
        """One pass over a tiny payload, so the first request pays no lazy initialisation."""


__all__ = ["Handler"]
