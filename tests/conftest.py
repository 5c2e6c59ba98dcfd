"""Fixtures shared by every test: the MNIST test split and the committed checkpoints.

Tests that need MNIST take the ``mnist_test`` fixture (or ``mnist_dir``). Without the data they
are skipped, except when ``REQUIRE_MNIST=1`` (CI sets it): then a missing data set is an error.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from model.checkpoint import Checkpoint, load_checkpoint
from training.data import DATA_DIR_ENV, Split, load_split

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "weights"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    value = os.environ.get(DATA_DIR_ENV)
    directory = Path(value) if value else None
    if directory is None or not directory.is_dir():
        message = f"MNIST IDX files not found: set {DATA_DIR_ENV} (it is {value!r})"
        if os.environ.get("REQUIRE_MNIST") == "1":
            pytest.fail(message + " -- REQUIRE_MNIST=1, so this is an error, not a skip", pytrace=False)
        pytest.skip(message)
    return directory


@pytest.fixture(scope="session")
def mnist_test(mnist_dir: Path) -> Split:
    return load_split("test", mnist_dir)


@pytest.fixture(scope="session")
def digit_checkpoint() -> Checkpoint:
    return load_checkpoint(WEIGHTS / "digit.pt")


@pytest.fixture(scope="session")
def sequence_checkpoint() -> Checkpoint:
    return load_checkpoint(WEIGHTS / "sequence.pt")


@pytest.fixture(scope="session")
def digit_sum_checkpoint() -> Checkpoint:
    return load_checkpoint(WEIGHTS / "digit_sum.pt")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
