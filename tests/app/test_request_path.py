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

from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.app.conftest import png_part
from training.strips import digit_image

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
