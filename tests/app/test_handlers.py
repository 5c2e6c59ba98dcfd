"""A new model endpoint is a handler, a catalog row and a route: a toy classifier built here,
served by the real app next to nothing else, answers through the same engine (batching, limits,
errors, metrics) as the shipped models."""

from __future__ import annotations

from typing import Annotated

import numpy as np
import torch
from fastapi import File, UploadFile
from fastapi.testclient import TestClient

from app.catalog import ModelSpec
from app.deps import ServingDep
from app.handlers import Upload
from app.handlers.digit import DigitHandler
from app.main import create_app
from app.settings import Settings
from model.architectures import build_model
from model.checkpoint import save_checkpoint
from model.preprocess import DEFAULT_CONFIG
from tests.app.conftest import png_part
from training.strips import digit_image

ARGUMENTS = {"channels": [2, 4], "features": 8, "dropout": 0.0}


class ToyHandler(DigitHandler):
    """The new handler file of docs/adding-a-model.md, in the test."""

    name = model = "toy"


def _toy_checkpoint(folder) -> None:
    """A tiny DigitNet whose answer is known: no weight reaches the output, a bias favours 3."""
    torch.manual_seed(0)
    net = build_model("DigitNet", ARGUMENTS)
    with torch.no_grad():
        net.classifier.weight.zero_()
        net.classifier.bias.copy_(torch.tensor([0.0, 0, 0, 4, 0, 0, 0, 0, 0, 0]))
    save_checkpoint(net, {"name": "toy", "version": "0.1.0", "architecture": "DigitNet", "arguments": ARGUMENTS,
                          "preprocess": DEFAULT_CONFIG.to_dict(), "labels": [str(d) for d in range(10)]},
                    folder / "toy.pt")


def test_a_toy_classifier_is_served_by_one_handler_one_row_and_one_route(tmp_path, mnist_test):
    _toy_checkpoint(tmp_path)
    app = create_app(Settings(device="cpu", weights_dir=tmp_path), catalog={"toy": ModelSpec("toy.pt", ToyHandler())})

    @app.post("/predict/toy")
    async def predict_toy(files: Annotated[list[UploadFile], File()], serving: ServingDep) -> dict:
        uploads = [Upload("files", file.filename or "", await file.read()) for file in files]
        return await serving.engine.run("toy", uploads, serving, "/predict/toy")

    with TestClient(app) as client:
        files = [png_part("files", digit_image(mnist_test.images[i]), name=f"{i}.png") for i in range(3)]
        body = client.post("/predict/toy", files=files).json()
        assert body["model"] == "toy:0.1.0"
        assert [p["label"] for p in body["predictions"]] == [3, 3, 3]
        expected = torch.softmax(torch.tensor([0.0, 0, 0, 4, 0, 0, 0, 0, 0, 0]), 0)[3].item()
        assert np.allclose([p["probability"] for p in body["predictions"]], expected, atol=1e-5)

        blank = client.post("/predict/toy", files=[png_part("files", digit_image(np.zeros((28, 28), np.uint8)), name="blank.png")])
        assert blank.status_code == 422 and blank.json()["code"] == "no_digit_found"
        assert [m["name"] for m in client.get("/models").json()["models"]] == ["toy"]
        metrics = client.get("/metrics").text
        assert 'inference_batch_size_count{model="toy"} 1.0' in metrics
        assert 'images_processed_total{endpoint="/predict/toy"} 3.0' in metrics


def test_small_uploads_decode_in_the_batch_and_big_ones_before_it(mnist_test, monkeypatch):
    """A lone small digit is decoded on the inference thread inside its batch; a photo-sized one
    (over SMALL_REQUEST_PIXELS) in the thread pool, so it never holds up other requests' passes.
    Both are read right."""
    import threading

    from app.engine import SMALL_REQUEST_PIXELS
    from tests.app.conftest import make_client

    threads: list[str] = []
    decode = DigitHandler.decode

    def recording(self, inputs, opened, serving):
        threads.append(threading.current_thread().name)
        return decode(self, inputs, opened, serving)

    side = int(SMALL_REQUEST_PIXELS ** 0.5) + 100
    with make_client() as client:
        monkeypatch.setattr(DigitHandler, "decode", recording)
        for size in (None, side):
            image = digit_image(mnist_test.images[0], size=size, black_on_white=True)
            body = client.post("/predict/digit", files=[png_part("files", image)]).json()
            assert body["predictions"][0]["label"] == mnist_test.labels[0]
    assert threads[0].startswith("inference") and not threads[1].startswith("inference"), threads
