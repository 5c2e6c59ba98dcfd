"""Runs the handlers: every request's one path from route to model and back.

``await engine.run(name, inputs, serving)`` opens the uploads (their headers, on the event loop),
holds their pixels against the worker's budget, decodes them where the handler says, queues the
payload in the model's batcher, and encodes the answer. The engine owns batching, the one
inference thread every forward pass runs on (passes never compete for the cores), the thread
plan for small and large batches, and the inference metrics; it knows no handler by name.

Where decoding runs: a single digit takes ~0.15 ms to decode and preprocess, less than handing
it to the thread pool and back costs the event loop, so those handlers decode inside the batch,
on the inference thread (``decode_in_batch``; docs/performance.md has the measurements), unless
the request's images declare over ``SMALL_REQUEST_PIXELS`` (``app.budget``): big uploads decode in the thread pool
and never hold up other requests' passes. Strips and sequences take a millisecond or more and
always decode in the thread pool first. With batching off
(the benchmark's comparison), the request's own worker thread decodes and runs its pass alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from app.batching import Batcher, DeadlineExceeded, Overloaded, run_unbatched
from app.budget import SMALL_REQUEST_PIXELS
from app.failures import RequestFailed
from app.handlers.base import Handler
from app.observability import Metrics
from app.registry import Models
from app.settings import Settings
from app.tuning import ThreadPlan

if TYPE_CHECKING:
    from app.deps import Serving


@dataclass
class _Job:
    """A request in a decode-in-batch handler's queue: ``decode`` for its batch to run on the
    inference thread, or its ``payload`` already decoded (large uploads, in the thread pool)."""

    decode: Any  # () -> payload, or None
    endpoint: str
    payload: Any = None


class _Runner:
    """One handler, its model's batcher (when batching is on), and its batch function."""

    def __init__(self, handler: Handler, models: Models, metrics: Metrics, threads: ThreadPlan,
                 batcher_for: Any) -> None:
        self.handler, self.models, self.metrics, self.threads = handler, models, metrics, threads
        batch = self.decode_then_predict if handler.decode_in_batch else self.predict
        self.batcher: Batcher[Any, Any] | None = batcher_for(handler.name, batch)

    def predict(self, payloads: list[Any]) -> list[Any]:
        """One forward pass over a batch with the threads its size calls for, recording its time
        and size (images) for ``/metrics``."""
        images = sum(self.handler.size(p) for p in payloads)
        self.threads.apply(images)
        started = time.perf_counter()
        outputs = self.handler.predict(self.models, payloads)
        name = self.handler.name
        self.metrics.inference.labels(name).observe(time.perf_counter() - started)
        self.metrics.batch_size.labels(name).observe(images)
        self.metrics.batch_requests.labels(name).observe(len(payloads))
        return outputs

    def decode_then_predict(self, jobs: list[_Job]) -> list[Any]:
        """A batch of requests: decode those not yet decoded (a bad upload fails only its own
        request), then one forward pass over them all."""
        results: list[Any] = [None] * len(jobs)
        positions = []
        for position, job in enumerate(jobs):
            if job.decode is not None:
                try:
                    job.payload = job.decode()
                except RequestFailed as error:
                    results[position] = error
                    continue
                self.metrics.images.labels(job.endpoint).inc(self.handler.size(job.payload))
            positions.append(position)
        if positions:
            for position, output in zip(positions, self.predict([jobs[p].payload for p in positions]), strict=True):
                results[position] = output
        return results


class Engine:
    """The handlers' runners, the inference thread they share, and their lifecycle."""

    def __init__(self, models: Models, handlers: Iterable[Handler], settings: Settings, metrics: Metrics) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self.threads = ThreadPlan(settings)
        self.metrics = metrics

        def batcher_for(name: str, run_batch: Any) -> Batcher[Any, Any] | None:
            if not settings.batching:
                return None
            return Batcher(name, run_batch, self.executor, max_batch=settings.batch_max_size,
                           max_wait=settings.batch_max_wait_ms / 1000, max_queue=settings.max_queue_images,
                           queue_depth=metrics.queue_depth, queue_wait=metrics.queue_wait)

        self.runners = {handler.name: _Runner(handler, models, metrics, self.threads, batcher_for) for handler in handlers}

    async def run(self, name: str, inputs: Any, serving: Serving, endpoint: str) -> dict[str, Any]:
        """The response body for ``inputs`` of endpoint ``name`` (``endpoint``: the route, for
        the images metric).

        Raises ``RequestFailed``: the handler's, for inputs it cannot use; ``overloaded`` when the
        model's queue or the pixel budget is full; ``deadline_exceeded`` when the deadline passes
        while the request waits.
        """
        runner = self.runners[name]
        handler = runner.handler
        opened = handler.open(inputs, serving.settings)
        pixels = sum(image.width * image.height for image in opened)
        with serving.pixels.hold(pixels):
            if runner.batcher is None:
                return await run_in_threadpool(self._alone, runner, inputs, opened, serving, endpoint)
            try:
                if handler.decode_in_batch and pixels <= SMALL_REQUEST_PIXELS:
                    job = _Job(lambda: handler.decode(inputs, opened, serving), endpoint)
                    output = await runner.batcher.submit(job, handler.count(inputs), serving.deadline)
                    payload = job.payload
                else:
                    payload = await run_in_threadpool(handler.decode, inputs, opened, serving)
                    self.metrics.images.labels(endpoint).inc(handler.size(payload))
                    queued = _Job(None, endpoint, payload) if handler.decode_in_batch else payload
                    output = await runner.batcher.submit(queued, handler.size(payload), serving.deadline)
            except Overloaded:
                raise RequestFailed("overloaded", "the service is at capacity; retry shortly") from None
            except DeadlineExceeded:
                raise RequestFailed("deadline_exceeded",
                                    "the request waited longer than the service's deadline; retry shortly") from None
        return handler.encode(payload, output, serving.models)

    def _alone(self, runner: _Runner, inputs: Any, opened: list[Any], serving: Serving, endpoint: str) -> dict[str, Any]:
        """Batching off: decode and run this request's own forward pass, on this thread."""
        handler = runner.handler
        payload = handler.decode(inputs, opened, serving)
        self.metrics.images.labels(endpoint).inc(handler.size(payload))
        output = run_unbatched(runner.predict, payload)
        return handler.encode(payload, output, serving.models)

    def start(self) -> None:
        for runner in self.runners.values():
            if runner.batcher is not None:
                runner.batcher.start()

    async def stop(self) -> None:
        for runner in self.runners.values():
            if runner.batcher is not None:
                await runner.batcher.stop()
        self.executor.shutdown(wait=True)
