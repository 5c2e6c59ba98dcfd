"""Runs the handlers: every request's one path from route to model and back.

``await engine.run(name, inputs, serving)`` opens the uploads (their headers, on the event loop),
holds their pixels against the worker's budget, decodes them where the handler says, queues the
payload in the model's batcher, and encodes the answer. The engine owns what makes that fair and
bounded, in this module's four parts:

* **Admission** (``PixelBudget``): decoded pixels as a budget, so memory is bounded by settings,
  not by what clients send.
* **Batching** (``Batcher``): concurrent requests for one model share one forward pass.
* **Threads** (``ThreadPlan``): torch's intra-op threads for each pass.
* **The engine** (``Engine``): one runner per handler, and the one inference thread every forward
  pass runs on (passes never compete for the cores), with the inference metrics. It knows no
  handler by name.

Where decoding runs: a single digit takes ~0.15 ms to decode and preprocess, less than handing
it to the thread pool and back costs the event loop, so those handlers decode inside the batch,
on the inference thread (``decode_in_batch``; docs/performance.md has the measurements), unless
the request's images declare over ``SMALL_REQUEST_PIXELS``: big uploads decode in the thread
pool and never hold up other requests' passes. Strips and sequences take a millisecond or more
and always decode in the thread pool first. With batching off (the benchmark's comparison), each
request decodes in the thread pool and runs a pass of its own on the inference thread.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import torch
from prometheus_client import Gauge, Histogram
from starlette.concurrency import run_in_threadpool

from app.failures import RequestFailed
from app.handlers.base import Handler
from app.observability import Metrics
from app.registry import Models
from app.settings import Settings
from model.devices import usable_cpus

if TYPE_CHECKING:
    from app.deps import Serving

log = logging.getLogger("app.engine")

P = TypeVar("P")
R = TypeVar("R")


# --- admission: decoded pixels in flight ---------------------------------------------------------
# Release this many pixels or more and the allocator is trimmed once nothing is in flight.
TRIM_AFTER_PIXELS = 4_000_000
# A small request: at most this many declared pixels (a few digits, a photo under a megapixel).
# It may use the headroom above the limit, and a decode-in-batch handler decodes it on the
# inference thread; a larger one takes tens of milliseconds to decode and does
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
    """This worker's decoded pixels in flight, against ``limit``: memory bounded by settings, not
    by what clients send.

    A request's uploads declare their pixels in their headers, read before any is decoded. A
    request declaring more than ``per_request`` (``MAX_REQUEST_PIXELS``) is refused (413
    ``image_too_large``); one that would take the pixels in flight past ``limit``
    (``MAX_INFLIGHT_PIXELS``) is turned away at once (503 ``overloaded``). The pixels are held
    until the request's answer is sent or it is abandoned. Both run on the event loop, so the
    count needs no lock. Small requests (what almost every client sends) have headroom above the
    limit, a twentieth of it: a burst of huge uploads turns away other huge uploads, not the
    ordinary requests behind them. When the last large request lets go, glibc is asked to give
    its free pages back (``malloc_trim``), or a worker's memory would stay at its peak after a
    burst of decoding.
    """

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


# --- threads: torch intra-op threads per pass ------------------------------------------------------

# A forward pass over this many images or more may use every usable CPU, whatever WORKERS is.
LARGE_BATCH = 128


class ThreadPlan:
    """torch's intra-op threads for each forward pass.

    Small batches (the many-small-requests case, when every worker is busy) get the CPUs this
    process may use (affinity and cgroup quota) divided among the WORKERS processes, so workers
    do not oversubscribe the cores. A batch of ``LARGE_BATCH`` images or more (a client sending
    hundreds of digits at once) gets every usable CPU: on 2 cores and 2 workers that took a
    256-digit request from 1 thread to 2, and measured faster both alone and with 4 such
    requests at a time (docs/performance.md). TORCH_THREADS fixes the number for every batch.
    """

    def __init__(self, settings: Settings) -> None:
        cpus = usable_cpus()
        self.small = settings.torch_threads or max(1, cpus // settings.worker_count)
        self.large = settings.torch_threads or cpus
        self._current = 0

    def apply(self, images: int) -> None:
        """Set the threads for a pass over ``images`` images (call from the inference thread)."""
        wanted = self.large if images >= LARGE_BATCH else self.small
        if wanted != self._current:
            torch.set_num_threads(wanted)
            self._current = wanted


# --- batching: one forward pass for concurrent requests --------------------------------------------

class Overloaded(Exception):
    """The model's queue is full: the client should retry later."""


class DeadlineExceeded(Exception):
    """The request's deadline passed before its batch ran."""


@dataclass(eq=False)
class _Queued(Generic[P, R]):
    payload: P
    size: int
    deadline: float
    future: asyncio.Future[R]
    arrived: float = field(default_factory=time.monotonic)
    overtaken: bool = False  # small jobs behind it have gone first once


class Batcher(Generic[P, R]):
    """Gathers jobs for one model into batches and runs ``run_batch`` on them in ``executor``.

    The loop waits for the first queued job and takes every job queued by then, up to
    ``max_batch`` images. While one batch runs, the next gathers in the queue, so under load
    batches fill by themselves and an idle model starts a lone request at once. ``max_wait`` (0 by
    default) may hold a batch back to fill, up to that long after its first job arrived.

    The queue is bounded: a job that would take it past ``max_queue`` images is refused at once
    (``Overloaded``); a job whose deadline passes while it waits is dropped
    (``DeadlineExceeded``), not computed for a client that has given up. Jobs of at most one
    batch (a digit or a few) have one batch of headroom above the bound, so a queue filled by
    many-image requests turns away the next many-image request, not the single digits behind
    it. And a job larger than a batch lets the small jobs queued behind it go first, once: a digit
    waits for at most one many-image pass, and the many-image job for at most one small pass.

    ``run_batch`` takes the payloads of a batch, in arrival order, and returns one result per
    payload; it runs off the event loop. A result that is an exception fails only its own job
    (one bad upload in a batch); an exception raised by ``run_batch`` fails every job of it.
    """

    def __init__(
        self,
        name: str,
        run_batch: Callable[[list[P]], Sequence[R]],
        executor: Executor,
        *,
        max_batch: int,
        max_wait: float,
        max_queue: int,
        queue_depth: Gauge | None = None,
        queue_wait: Histogram | None = None,
    ) -> None:
        self.name, self.run_batch, self.executor = name, run_batch, executor
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait, max_queue
        self.queue_depth = queue_depth.labels(name) if queue_depth is not None else None
        self.queue_wait = queue_wait.labels(name) if queue_wait is not None else None
        self._jobs: deque[_Queued[P, R]] = deque()
        self._queued = 0  # images waiting, not yet in a running batch
        self._arrival = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        return self._queued

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        """Stop gathering; jobs still queued fail with ``Overloaded`` (the service is going away)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._jobs:
            job = self._jobs.popleft()
            if not job.future.done():
                job.future.set_exception(Overloaded())
        self._set_depth(0)

    async def submit(self, payload: P, size: int, deadline: float) -> R:
        """Queue ``payload`` (``size`` images) and wait for its result until ``deadline``
        (``time.monotonic()`` seconds). Raises ``Overloaded`` at once when the queue is full."""
        bound = self.max_queue + (self.max_batch if size <= self.max_batch else 0)
        if self._queued + size > bound and self._queued > 0:
            raise Overloaded()
        job: _Queued[P, R] = _Queued(payload, size, deadline, asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self._set_depth(self._queued + size)
        self._arrival.set()
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), max(deadline - time.monotonic(), 0))
        except TimeoutError:
            self._withdraw(job)
            raise DeadlineExceeded() from None
        except asyncio.CancelledError:  # the client went away
            self._withdraw(job)
            raise

    def _withdraw(self, job: _Queued[P, R]) -> None:
        """Take a job its client gave up on out of the queue, so it neither holds queue space
        nor fills a batch; if its batch is already running, the result is just dropped."""
        job.future.cancel()
        if job in self._jobs:
            self._jobs.remove(job)
            self._set_depth(self._queued - job.size)

    def _set_depth(self, images: int) -> None:
        self._queued = images
        if self.queue_depth is not None:
            self.queue_depth.set(images)

    async def _gather(self) -> list[_Queued[P, R]]:
        """Wait for the first job; then, with ``max_wait``, for a full batch or ``max_wait`` after
        that job arrived; take the queued jobs, up to ``max_batch`` images."""
        while not self._jobs:
            self._arrival.clear()
            await self._arrival.wait()
        first = self._jobs[0]
        while self._queued < self.max_batch:
            remaining = first.arrived + self.max_wait - time.monotonic()
            if remaining <= 0:
                break
            self._arrival.clear()
            try:
                await asyncio.wait_for(self._arrival.wait(), remaining)
            except TimeoutError:
                break
        batch = self._take()
        self._set_depth(self._queued - sum(job.size for job in batch))
        now = time.monotonic()
        live = []
        for job in batch:
            if job.future.done():
                continue  # its client gave up (deadline) before the batch ran
            if job.deadline <= now:
                job.future.set_exception(DeadlineExceeded())
                continue
            if self.queue_wait is not None:
                self.queue_wait.observe(now - job.arrived)
            live.append(job)
        return live

    def _take(self) -> list[_Queued[P, R]]:
        """The next batch, out of the queue: the jobs at its head, up to ``max_batch`` images
        (at least one job); or, when the head is a job larger than a batch that has not yet let
        anything pass, the small jobs behind it."""
        head = self._jobs[0]
        if head.size > self.max_batch and not head.overtaken:
            head.overtaken = True
            small, images = [], 0
            for job in self._jobs:
                if job.size <= self.max_batch and images + job.size <= self.max_batch:
                    small.append(job)
                    images += job.size
            if small:
                for job in small:
                    self._jobs.remove(job)
                return small
        batch, images = [], 0
        while self._jobs and (not batch or images + self._jobs[0].size <= self.max_batch):
            job = self._jobs.popleft()
            images += job.size
            batch.append(job)
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(self.executor, self.run_batch, [job.payload for job in batch])
            except Exception as error:  # handed to every waiting request, which reports it
                log.exception("batch of %d jobs for %s failed", len(batch), self.name)
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            for job, result in zip(batch, results, strict=True):
                if job.future.done():
                    continue
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)


def run_unbatched(run_batch: Callable[[list[Any]], Sequence[R | BaseException]], payload: Any) -> R:
    """One payload through a batch function on its own: the path when batching is off."""
    result = run_batch([payload])[0]
    if isinstance(result, BaseException):
        raise result
    return result


# --- the engine ---------------------------------------------------------------------------------

@dataclass
class _Request:
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

    def decode_then_predict(self, jobs: list[_Request]) -> list[Any]:
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


def inference_thread() -> ThreadPoolExecutor:
    """The one thread that runs the networks: the models are loaded and warmed up on it, and the
    engine runs every forward pass on it.

    Why loading belongs there too: torch's OpenMP runtime (libgomp) keeps a team of worker
    threads for every thread that has run a parallel region. Once those threads outnumber the
    cores, libgomp stops its workers from spinning between regions, and every small region pays
    for waking them: the line reader's LSTM runs hundreds per strip, and a 10-digit strip's
    pass took 15 ms instead of 3.5 ms on 2 cores when the models had been loaded (traced and
    warmed up) on another thread (docs/performance.md). One thread, one team."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")


class Engine:
    """The handlers' runners, the inference thread they share (``inference_thread``, the one the
    models were loaded on), and their lifecycle."""

    def __init__(self, models: Models, handlers: Iterable[Handler], settings: Settings, metrics: Metrics,
                 executor: ThreadPoolExecutor) -> None:
        self.executor = executor
        self.threads = ThreadPlan(settings)
        self.pixels = PixelBudget(settings.max_request_pixels, settings.max_inflight_pixels)
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
        with self.pixels.hold(pixels):
            if runner.batcher is None:
                return await self._alone(runner, inputs, opened, serving, endpoint)
            try:
                if handler.decode_in_batch and pixels <= SMALL_REQUEST_PIXELS:
                    job = _Request(lambda: handler.decode(inputs, opened, serving), endpoint)
                    output = await runner.batcher.submit(job, handler.count(inputs), serving.deadline)
                    payload = job.payload
                else:
                    payload = await run_in_threadpool(handler.decode, inputs, opened, serving)
                    self.metrics.images.labels(endpoint).inc(handler.size(payload))
                    queued = _Request(None, endpoint, payload) if handler.decode_in_batch else payload
                    output = await runner.batcher.submit(queued, handler.size(payload), serving.deadline)
            except Overloaded:
                raise RequestFailed("overloaded", "the service is at capacity; retry shortly") from None
            except DeadlineExceeded:
                raise RequestFailed("deadline_exceeded",
                                    "the request waited longer than the service's deadline; retry shortly") from None
        return handler.encode(payload, output, serving.models)

    async def _alone(self, runner: _Runner, inputs: Any, opened: list[Any], serving: Serving, endpoint: str) -> dict[str, Any]:
        """Batching off: decode in the thread pool, then this request's own forward pass on the
        inference thread."""
        handler = runner.handler
        payload = await run_in_threadpool(handler.decode, inputs, opened, serving)
        self.metrics.images.labels(endpoint).inc(handler.size(payload))
        output = await asyncio.get_running_loop().run_in_executor(self.executor, run_unbatched, runner.predict, payload)
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
