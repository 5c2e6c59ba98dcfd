"""Dynamic batching: concurrent requests for one model share one forward pass.

A request hands its preprocessed input to the model's ``Batcher`` and awaits the answer. The
batcher's loop waits for the first queued job and takes every job queued by then, up to
``max_batch`` images, and runs the batch on the inference thread. While one batch runs, the
next one gathers in the queue, so under load batches fill by themselves, and an idle model
starts a lone request at once. ``max_wait`` (0 by default) may hold a batch back to fill, up to
that long after its first job arrived: fewer, fuller passes for a little latency.

The queue is bounded: a job that would take it past ``max_queue`` images is refused at once
(``Overloaded``), so latency cannot grow without bound; a job whose deadline passes while it
waits is dropped (``DeadlineExceeded``) rather than computed for a client that has given up.
Jobs of at most one batch (``max_batch`` images: a digit or a few) have one batch of headroom
above the bound, as the pixel budget gives small requests headroom: a queue filled by a few
many-image requests turns away the next many-image request, not the single digits behind it,
which cost the queue at most one more pass. And a job larger than a batch lets the small jobs
queued behind it go first, once: a digit waits for at most one many-image pass, not for every
one queued before it, and the many-image job waits for at most one small pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from prometheus_client import Gauge, Histogram

log = logging.getLogger("app.batching")

P = TypeVar("P")
R = TypeVar("R")


class Overloaded(Exception):
    """The model's queue is full: the client should retry later."""


class DeadlineExceeded(Exception):
    """The request's deadline passed before its batch ran."""


@dataclass(eq=False)
class _Job(Generic[P, R]):
    payload: P
    size: int
    deadline: float
    future: asyncio.Future[R]
    arrived: float = field(default_factory=time.monotonic)
    overtaken: bool = False  # small jobs behind it have gone first once


class Batcher(Generic[P, R]):
    """Gathers jobs for one model into batches and runs ``run_batch`` on them in ``executor``.

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
        self._jobs: deque[_Job[P, R]] = deque()
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
        job: _Job[P, R] = _Job(payload, size, deadline, asyncio.get_running_loop().create_future())
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

    def _withdraw(self, job: _Job[P, R]) -> None:
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

    async def _gather(self) -> list[_Job[P, R]]:
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

    def _take(self) -> list[_Job[P, R]]:
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
