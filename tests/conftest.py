"""Fixtures shared by every test: the MNIST and Fashion-MNIST test splits and the committed
checkpoints.

Tests that need MNIST take the ``mnist_test`` fixture (or ``mnist_dir``); those that need
Fashion-MNIST take ``fashion_test`` (``$FASHION_MNIST_DATA_DIR`` or Debian's
``dataset-fashion-mnist``). Without the data they are skipped, except when ``REQUIRE_MNIST=1``
or ``REQUIRE_FASHION_MNIST=1`` (CI sets both): then a missing data set is an error.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from model.checkpoint import Checkpoint, load_checkpoint
from training.data import DATA_DIR_ENV, FASHION_MNIST, Split, load_split, resolve_data_dir

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "weights"


def _data_dir(directory: Path | None, message: str, required_by: str) -> Path:
    """The data set's folder, else a skip saying why (a failure when ``$required_by`` is 1)."""
    if directory is None or not directory.is_dir():
        if os.environ.get(required_by) == "1":
            pytest.fail(f"{message} -- {required_by}=1, so this is an error, not a skip", pytrace=False)
        pytest.skip(message)
    return directory


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    value = os.environ.get(DATA_DIR_ENV)
    return _data_dir(Path(value) if value else None, f"MNIST IDX files not found: set {DATA_DIR_ENV} (it is {value!r})",
                     "REQUIRE_MNIST")


@pytest.fixture(scope="session")
def mnist_test(mnist_dir: Path) -> Split:
    return load_split("test", mnist_dir)


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    return _data_dir(resolve_data_dir(None, FASHION_MNIST), f"Fashion-MNIST IDX files not found: set {FASHION_MNIST.env} "
                     "or `apt-get install dataset-fashion-mnist`", "REQUIRE_FASHION_MNIST")


@pytest.fixture(scope="session")
def fashion_test(fashion_dir: Path) -> Split:
    return load_split("test", fashion_dir, FASHION_MNIST)


@pytest.fixture(scope="session")
def fashion_checkpoint() -> Checkpoint:
    return load_checkpoint(WEIGHTS / "fashion.pt")


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


@pytest.fixture(scope="session")
def line_reader_checkpoint() -> Checkpoint:
    return load_checkpoint(WEIGHTS / "line_reader.pt")
