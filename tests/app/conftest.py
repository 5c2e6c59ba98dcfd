"""The real app, with the committed checkpoints, through its lifespan, on the CPU."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.settings import Settings
from training.strips import encode


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium: a skip where it is missing, an error in CI (REQUIRE_BROWSER=1)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail("chromium not found and REQUIRE_BROWSER=1")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    return path


def make_client(**overrides: object) -> TestClient:
    return TestClient(create_app(Settings(device="cpu", **overrides)))


@pytest.fixture(scope="session")
def client() -> Iterator[TestClient]:
    with make_client() as test_client:
        yield test_client


def png_part(field: str, image, name: str = "digit.png", fmt: str = "PNG", mime: str = "image/png", **params):
    return (field, (name, encode(image, fmt, **params), mime))


def served_id(client: TestClient, name: str) -> str:
    """The ``model`` field the service answers with for catalog model ``name`` (name:version),
    read from ``/models`` so that a retrained checkpoint does not break the tests."""
    (info,) = [m for m in client.get("/models").json()["models"] if m["name"] == name]
    return f"{name}:{info['version']}"


def thick_scan(raw: np.ndarray, black_on_white: bool = True) -> Image.Image:
    """An MNIST digit as a 16x16 binary scan, strokes thickened, filling its frame:
    ``scripts.digit_robustness``'s hardest kind, as an upload."""
    from scripts.digit_robustness import KINDS, render

    gray = render(raw, KINDS["16x16 binary scan, thick pen"])
    return Image.fromarray(((gray if black_on_white else 1.0 - gray) * 255).astype(np.uint8))


def correct_indices(split, checkpoint, count: int, start: int = 0) -> np.ndarray:
    """Test digits the digit model reads right, so exact-label assertions test the service, not
    the model's 0.3% of errors (those are measured in tests/training)."""
    import torch

    from model.preprocess import normalise, preprocess_digit

    chosen = []
    for index in range(start, len(split)):
        array = preprocess_digit(split.images[index].astype(np.float32) / 255)
        with torch.inference_mode():
            probabilities = checkpoint.model(normalise(array[None])).softmax(1)[0]
        if int(probabilities.argmax()) == split.labels[index] and float(probabilities.max()) > 0.99:
            chosen.append(index)
        if len(chosen) == count:
            break
    return np.array(chosen)


def metric(client, name: str, labels: str = "") -> float:
    """A sample from /metrics; 0 for a labelled series not yet observed (Prometheus omits it)."""
    text = client.get("/metrics").text
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def wait_for_in_flight(client, count: int) -> None:
    """Until ``count`` prediction requests are inside the service (polling /metrics, no sleep)."""
    for _ in range(100_000):
        if metric(client, "prediction_requests_in_flight") == count:
            return
    pytest.fail(f"never saw {count} requests in flight")
