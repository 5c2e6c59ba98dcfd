"""The models behind one interface the pipeline awaits, batched or not.

For each model a ``Runner`` takes a ``prepare`` function (decode and preprocess the request's
uploads) and returns the model's answer; neither ever runs on the event loop.

With batching on, every forward pass runs on one inference thread, so passes never compete for
the cores. For single-image work (``/predict/digit``, ``/predict/digit-sum``, ``/predict/fashion``) the batch also
prepares its own requests on that thread: a digit takes ~0.15 ms to decode and preprocess, less
than handing it to the thread pool and back costs the event loop, and fewer threads contending
for the GIL keep the loop responsive (docs/performance.md has the measurements). Strips take
a millisecond or more to decode and scale, so ``/predict/sequence`` prepares in the thread
pool and queues the arrays or line image. With batching off (the benchmark's comparison), the
request's own worker thread prepares and runs its forward pass alone.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

import numpy as np
from starlette.concurrency import run_in_threadpool

from app import inference
from app.batching import Batcher, DeadlineExceeded, Overloaded, run_unbatched
from app.failures import RequestFailed
from app.observability import Metrics
from app.registry import Models
from app.settings import Settings
from app.tuning import ThreadPlan
from model.line import Reading

P = TypeVar("P")
R = TypeVar("R")


Prepare = Callable[[], tuple[P, int]]


def _timed(metrics: Metrics, threads: ThreadPlan, model: str, run: Callable[[list[Any]], Sequence[Any]],
           payloads: list[Any]) -> Sequence[Any]:
    """Run one forward pass over a batch with the threads its size calls for, recording its time
    and size (images) for ``/metrics``."""
    images = sum(_images(p) for p in payloads)
    threads.apply(images)
    started = time.perf_counter()
    results = run(payloads)
    metrics.inference.labels(model).observe(time.perf_counter() - started)
    metrics.batch_size.labels(model).observe(images)
    metrics.batch_requests.labels(model).observe(len(payloads))
    return results


def _images(payload: Any) -> int:
    """Images in one request's payload: a stack of digit arrays holds several; a digit with its
    number (digit-sum) or a strip's line image is one."""
    return len(payload) if isinstance(payload, np.ndarray) else 1


def _prepare_then_run(run_batch: Callable[[list[P]], Sequence[R]], prepares: list[Prepare[P]]) -> list[R | BaseException]:
    """A batch of unprepared requests: prepare each (a bad upload fails only its own request,
    with its ``RequestFailed``), then one forward pass over the rest."""
    results: list[R | BaseException | None] = [None] * len(prepares)
    payloads, positions = [], []
    for position, prepare in enumerate(prepares):
        try:
            payloads.append(prepare()[0])
            positions.append(position)
        except RequestFailed as error:
            results[position] = error
    if payloads:
        for position, result in zip(positions, run_batch(payloads), strict=True):
            results[position] = result
    return results  # type: ignore[return-value]


class Runner(Generic[P, R]):
    """One model: its batch function, and its batcher when batching is on.

    ``prepare_in_batch``: queue the request unprepared and let the batch prepare it on the
    inference thread (cheap single digits), rather than prepare it in the thread pool first.
    """

    def __init__(self, run_batch: Callable[[list[P]], Sequence[R]], batcher: Batcher[Any, R] | None,
                 prepare_in_batch: bool) -> None:
        self.run_batch, self.batcher, self.prepare_in_batch = run_batch, batcher, prepare_in_batch

    async def run(self, prepare: Prepare[P], size: int, deadline: float) -> R:
        """``prepare()`` -> (payload, images in it); then the model's result for that payload.
        ``size`` is the number of images expected (uploads), for the queue bound.

        Raises the ``RequestFailed`` of ``prepare``; and ``RequestFailed`` when the model's queue is
        full (``overloaded``) or the request's deadline passes while it waits
        (``deadline_exceeded``).
        """
        if self.batcher is None:
            return await run_in_threadpool(lambda: run_unbatched(self.run_batch, prepare()[0]))
        try:
            if self.prepare_in_batch:
                return await self.batcher.submit(prepare, size, deadline)
            payload, size = await run_in_threadpool(prepare)
            return await self.batcher.submit(payload, size, deadline)
        except Overloaded:
            raise RequestFailed("overloaded", "the service is at capacity; retry shortly") from None
        except DeadlineExceeded:
            raise RequestFailed("deadline_exceeded", "the request waited longer than the service's deadline; retry shortly") from None


class Engine:
    """The runners, the inference thread they share, and their lifecycle."""

    def __init__(self, models: Models, settings: Settings, metrics: Metrics) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self.threads = ThreadPlan(settings)

        def runner(name: str, run: Callable[[Models, list[Any]], Sequence[Any]], prepare_in_batch: bool) -> Runner[Any, Any]:
            run_batch = functools.partial(_timed, metrics, self.threads, name, functools.partial(run, models))
            batcher = None
            if settings.batching:
                batch = functools.partial(_prepare_then_run, run_batch) if prepare_in_batch else run_batch
                batcher = Batcher(name, batch, self.executor, max_batch=settings.batch_max_size,
                                  max_wait=settings.batch_max_wait_ms / 1000, max_queue=settings.max_queue_images,
                                  queue_depth=metrics.queue_depth, queue_wait=metrics.queue_wait)
            return Runner(run_batch, batcher, prepare_in_batch)

        self.digit: Runner[Any, inference.Predictions] = runner("digit", inference.classify_batch, True)
        self.sequence: Runner[Any, tuple[float, inference.Predictions]] = runner("sequence", inference.sequence_batch, False)
        self.line_reader: Runner[Any, Reading] = runner("line_reader", inference.read_strip_batch, False)
        self.digit_sum: Runner[Any, dict[str, Any]] = runner("digit_sum", inference.add_batch, True)
        self.fashion: Runner[Any, inference.Predictions] = runner("fashion", inference.fashion_batch, True)
        self.runners = (self.digit, self.sequence, self.line_reader, self.digit_sum, self.fashion)

    def start(self) -> None:
        for runner in self.runners:
            if runner.batcher is not None:
                runner.batcher.start()

    async def stop(self) -> None:
        for runner in self.runners:
            if runner.batcher is not None:
                await runner.batcher.stop()
        self.executor.shutdown(wait=True)
