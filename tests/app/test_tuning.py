"""torch threads per forward pass (the engine's ThreadPlan)."""

from __future__ import annotations

import pytest
import torch

from app.engine import LARGE_BATCH, ThreadPlan
from app.settings import Settings
from model.devices import usable_cpus


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_small_batches_share_the_cpus_among_workers_and_large_ones_use_them_all():
    cpus = usable_cpus()
    plan = ThreadPlan(Settings(workers=2))
    assert (plan.small, plan.large) == (max(1, cpus // 2), cpus)
    plan.apply(1)
    assert torch.get_num_threads() == plan.small
    plan.apply(LARGE_BATCH)
    assert torch.get_num_threads() == cpus
    plan.apply(LARGE_BATCH - 1)
    assert torch.get_num_threads() == plan.small


def test_torch_threads_fixes_the_number_for_every_batch():
    plan = ThreadPlan(Settings(torch_threads=3, workers=2))
    for images in (1, LARGE_BATCH, 10 * LARGE_BATCH):
        plan.apply(images)
        assert torch.get_num_threads() == 3
