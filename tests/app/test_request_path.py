"""A digit request's path through the code: route -> engine -> handler -> model, a few files.

Every Python call made while one ``POST /predict/digit`` is served, on every thread (the event
loop's, the thread pool's, the inference thread), is recorded by file. The edge every route
shares (the middlewares and the dependencies) is listed apart: the path proper, from the route
function to the model and back, must stay within four files of ``app/``."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.app.conftest import png_part
from training.strips import digit_image, make_strip

APP = Path(__file__).resolve().parents[2] / "app"
EDGE = {"middleware.py", "deps.py"}  # around every route: admission, limits, access log; Serving, API key


def test_a_digit_request_enters_four_app_files_past_the_edge(mnist_test):
    files = [png_part("files", digit_image(mnist_test.images[0]))]
    entered: Counter = Counter()
    recording = threading.Event()

    def profile(frame, event, arg):
        if event == "call" and recording.is_set():
            path = Path(frame.f_code.co_filename)
            if APP in path.parents:
                entered[path.relative_to(APP).as_posix()] += 1

    # Set before the app starts, so every thread it starts (the event loop's, the inference
    # thread, the thread pool's) is followed; the first request warms them up unrecorded.
    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        with TestClient(create_app(Settings(device="cpu", workers=1))) as client:
            assert client.post("/predict/digit", files=files).status_code == 200
            recording.set()
            response = client.post("/predict/digit", files=files)
            recording.clear()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    assert response.status_code == 200 and response.json()["predictions"][0]["label"] == mnist_test.labels[0]
    path = {name for name in entered if name not in EDGE}
    assert {"routers/predict.py", "engine.py", "handlers/digit.py"} <= path, entered
    assert len(path) <= 4, f"the path enters {sorted(path)}"


@pytest.mark.parametrize("batching", [True, False])
def test_every_network_runs_on_the_thread_the_models_were_loaded_on(mnist_test, batching):
    """Loading (tracing, warm-up) and every endpoint's forward passes, batched or not, run their
    networks on one thread: torch's OpenMP runtime keeps a team of workers per thread that runs a
    network, and a second team on 2 cores made every strip's pass several times slower
    (``app.engine.inference_thread``)."""
    digit = digit_image(mnist_test.images[0])
    strip = make_strip(mnist_test.images[:6], mnist_test.labels[:6], np.random.default_rng(0)).image
    ran_networks: set[str] = set()
    module_call = Path(torch.nn.Module.__call__.__code__.co_filename)

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_name == "_call_impl" and Path(frame.f_code.co_filename) == module_call:
            ran_networks.add(threading.current_thread().name)

    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        with TestClient(create_app(Settings(device="cpu", workers=1, batching=batching))) as client:
            loaded_by = set(ran_networks)
            responses = [
                client.post("/predict/digit", files=[png_part("files", digit)]),
                client.post("/predict/sequence", files=[png_part("strip", strip, "strip.png")]),
                client.post("/predict/sequence", files=[png_part("files", digit)] * 3),
                client.post("/predict/digit-sum", files=[png_part("file", digit)], data={"number": "5"}),
                client.post("/predict/fashion", files=[png_part("files", digit)]),
            ]
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    assert [r.status_code for r in responses] == [200] * 5, [r.text for r in responses]
    assert len(loaded_by) == 1 and ran_networks == loaded_by, ran_networks
    assert threading.main_thread().name not in ran_networks
