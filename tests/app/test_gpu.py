"""On a machine with CUDA, DEVICE=auto puts the models on the GPU and they answer as on the CPU.

Skipped on machines without CUDA (CI has none); run where a GPU is lent.
"""

from __future__ import annotations

import pytest
import torch

from tests.app.conftest import png_part
from training.strips import digit_image

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def test_auto_device_serves_from_the_gpu_with_the_cpu_answers(client, mnist_test):
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import Settings

    files = [png_part("files", digit_image(mnist_test.images[i], size=64, black_on_white=i % 2 == 0)) for i in range(32)]
    on_cpu = client.post("/predict/digit", files=files).json()["predictions"]
    with TestClient(create_app(Settings(device="auto"))) as gpu:
        assert {m["device"] for m in gpu.get("/models").json()["models"]} == {"cuda"}
        on_gpu = gpu.post("/predict/digit", files=files).json()["predictions"]
        body = gpu.post("/predict/digit-sum", files=[files[0]], data={"number": "12"}).json()
    assert [p["label"] for p in on_gpu] == [p["label"] for p in on_cpu]
    for a, b in zip(on_gpu, on_cpu):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-3)
    assert body["sum"] == body["digit"] + 12
