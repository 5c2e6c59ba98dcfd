"""Process-wide runtime settings for serving, each chosen by measurement (docs/performance.md)."""

from __future__ import annotations

import gc

import torch

from app.settings import Settings
from model.devices import usable_cpus

# Collect the youngest generation every 20,000 allocations instead of 700: a request allocates
# hundreds of short-lived objects, and fewer, larger young collections cost less in all.
GC_THRESHOLDS = (20_000, 20, 100)
DEFAULT_GC_THRESHOLDS = gc.get_threshold()


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


def freeze_startup_objects() -> None:
    """Move everything alive after start-up (torch, the models, FastAPI's routes) out of the
    garbage collector's sight. Without this, each full collection walked all of it and stalled
    the event loop for 150-170 ms (measured with gc.callbacks), which was the whole of the p99
    latency under load: p99 fell from 204 ms to 75 ms at 64 concurrent requests (2 workers)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def thaw() -> None:
    """Undo ``freeze_startup_objects`` when the service stops (an app made again in the same
    process, as tests do, should not keep the old one's objects forever)."""
    gc.unfreeze()
    gc.set_threshold(*DEFAULT_GC_THRESHOLDS)
