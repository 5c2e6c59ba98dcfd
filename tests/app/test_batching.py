"""The batcher on its own: gathering, limits, the bounded queue, deadlines, per-job failures."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from app.engine import Batcher, DeadlineExceeded, Overloaded

LATER = 3600.0  # a deadline that never comes in these tests


class Recorder:
    """A batch function that doubles numbers and records each batch; ``gate`` holds it."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, payloads: list[Any]) -> list[Any]:
        self.entered.set()
        self.gate.wait(10)
        self.batches.append(list(payloads))
        return [ValueError(f"bad {p}") if p < 0 else p * 2 for p in payloads]


@pytest.fixture
def executor():
    with ThreadPoolExecutor(1) as pool:
        yield pool


def run(coroutine):
    return asyncio.run(coroutine)


async def hold_first_pass(batcher: Batcher, recorder: Recorder) -> asyncio.Future:
    """Start ``batcher`` with job 0 in a pass that ``recorder.gate`` holds until the test sets it,
    so that the jobs submitted meanwhile queue up behind it."""
    recorder.gate.clear()
    batcher.start()
    running = asyncio.ensure_future(batcher.submit(0, 1, time.monotonic() + LATER))
    await asyncio.get_running_loop().run_in_executor(None, recorder.entered.wait, 10)
    return running


def test_concurrent_jobs_share_one_batch_when_it_fills(executor) -> None:
    recorder = Recorder()

    async def scenario():
        batcher = Batcher("t", recorder, executor, max_batch=4, max_wait=LATER, max_queue=100)
        batcher.start()
        # max_wait is an hour: only a full batch can start the pass
        results = await asyncio.gather(*[batcher.submit(n, 1, time.monotonic() + LATER) for n in range(4)])
        await batcher.stop()
        return results

    assert run(scenario()) == [0, 2, 4, 6]
    assert recorder.batches == [[0, 1, 2, 3]]


def test_a_lone_job_runs_after_max_wait(executor) -> None:
    recorder = Recorder()

    async def scenario():
        batcher = Batcher("t", recorder, executor, max_batch=64, max_wait=0.0, max_queue=100)
        batcher.start()
        result = await batcher.submit(21, 1, time.monotonic() + LATER)
        await batcher.stop()
        return result

    assert run(scenario()) == 42
    assert recorder.batches == [[21]]


def test_batches_never_exceed_max_batch_images(executor) -> None:
    recorder = Recorder()

    async def scenario():
        batcher = Batcher("t", recorder, executor, max_batch=5, max_wait=0.0, max_queue=100)
        first = await hold_first_pass(batcher, recorder)
        rest = [asyncio.ensure_future(batcher.submit(n, 3, time.monotonic() + LATER)) for n in (1, 2, 3)]
        await asyncio.sleep(0)
        recorder.gate.set()
        results = await asyncio.gather(first, *rest)
        await batcher.stop()
        return results

    assert run(scenario()) == [0, 2, 4, 6]
    # each later job holds 3 images: two of them would make 6 > 5, so each gets its own pass
    assert recorder.batches == [[0], [1], [2], [3]]


def test_a_full_queue_refuses_at_once_and_recovers(executor) -> None:
    recorder = Recorder()

    async def scenario():
        batcher = Batcher("t", recorder, executor, max_batch=1, max_wait=0.0, max_queue=2)
        running = await hold_first_pass(batcher, recorder)
        # two images fill the queue; single images have one batch (one image) of headroom
        queued = [asyncio.ensure_future(batcher.submit(n, 1, time.monotonic() + LATER)) for n in (1, 2, 3)]
        await asyncio.sleep(0)
        assert batcher.queued == 3
        with pytest.raises(Overloaded):
            await batcher.submit(4, 1, time.monotonic() + LATER)
        recorder.gate.set()
        results = await asyncio.gather(running, *queued)
        after = await batcher.submit(5, 1, time.monotonic() + LATER)  # serving normally again
        await batcher.stop()
        return results, after

    assert run(scenario()) == ([0, 2, 4, 6], 10)


def test_a_queue_full_of_large_jobs_refuses_large_ones_but_not_small_ones(executor) -> None:
    recorder = Recorder()

    async def scenario():
        batcher = Batcher("t", recorder, executor, max_batch=4, max_wait=0.0, max_queue=16)
        running = await hold_first_pass(batcher, recorder)
        large = asyncio.ensure_future(batcher.submit(1, 16, time.monotonic() + LATER))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await batcher.submit(2, 5, time.monotonic() + LATER)  # more than a batch: no headroom
        small = [asyncio.ensure_future(batcher.submit(n, 2, time.monotonic() + LATER)) for n in (3, 4)]
        await asyncio.sleep(0)
        assert batcher.queued == 20
        with pytest.raises(Overloaded):
            await batcher.submit(5, 1, time.monotonic() + LATER)  # the headroom is one batch
        recorder.gate.set()
        results = await asyncio.gather(running, large, *small)
        await batcher.stop()
        return results

    assert run(scenario()) == [0, 2, 6, 8]


def test_a_job_past_its_deadline_is_dropped_not_computed(executor) -> None:
    recorder = Recorder()

    async def scenario():
        batcher = Batcher("t", recorder, executor, max_batch=1, max_wait=0.0, max_queue=10)
        running = await hold_first_pass(batcher, recorder)
        with pytest.raises(DeadlineExceeded):
            await batcher.submit(1, 1, time.monotonic())  # already due
        recorder.gate.set()
        result = await running
        await batcher.stop()
        return result

    assert run(scenario()) == 0
    assert recorder.batches == [[0]], "the expired job must not reach the model"


def test_an_error_result_fails_only_its_own_job(executor) -> None:
    recorder = Recorder()

    async def scenario():
        batcher = Batcher("t", recorder, executor, max_batch=3, max_wait=LATER, max_queue=10)
        batcher.start()
        outcomes = await asyncio.gather(*[batcher.submit(n, 1, time.monotonic() + LATER) for n in (1, -1, 2)],
                                        return_exceptions=True)
        await batcher.stop()
        return outcomes

    good, bad, other = run(scenario())
    assert (good, other) == (2, 4)
    assert isinstance(bad, ValueError) and str(bad) == "bad -1"
    assert recorder.batches == [[1, -1, 2]]


def test_small_jobs_pass_a_large_one_once(executor) -> None:
    """A digit waits for at most one many-image pass; the many-image job for one small pass."""
    recorder = Recorder()

    async def scenario():
        batcher = Batcher("t", recorder, executor, max_batch=4, max_wait=0.0, max_queue=64)
        running = await hold_first_pass(batcher, recorder)
        deadline = time.monotonic() + LATER
        jobs = [asyncio.ensure_future(batcher.submit(n, size, deadline))
                for n, size in ((10, 8), (1, 1), (11, 8), (2, 2), (3, 1), (4, 3))]
        await asyncio.sleep(0)
        recorder.gate.set()
        await asyncio.gather(running, *jobs)
        await batcher.stop()

    run(scenario())
    # 10 lets 1, 2 and 3 go first (4 does not fit with them); then 10 itself; then 11, reaching
    # the head, lets 4 go first; then 11
    assert recorder.batches == [[0], [1, 2, 3], [10], [4], [11]]
