"""POST /predict/fashion through the real app, with Fashion-MNIST test images as users upload them:
Fashion-MNIST's own polarity (a light garment on black) and product photos (dark on white paper,
larger, in colour, JPEG)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.app.conftest import png_part
from training.data import FASHION_MNIST, preprocess_split
from training.strips import digit_image, encode

CLASSES = list(FASHION_MNIST.labels)


@pytest.fixture(scope="module")
def offline(fashion_test, fashion_checkpoint) -> np.ndarray:
    """The checkpoint's probabilities for the first 600 test images, computed without HTTP."""
    config = fashion_checkpoint.preprocess
    arrays = preprocess_split(fashion_test.images[:600], config)
    with torch.inference_mode():
        inputs = (torch.as_tensor(arrays) - config.mean) / config.std
        return fashion_checkpoint.model(inputs.unsqueeze(1)).softmax(1).numpy()


@pytest.fixture(scope="module")
def known(fashion_test, offline) -> np.ndarray:
    """Test images the model reads right and surely, one of each class first, so that exact-label
    assertions test the service, not the model's errors (measured in tests/training)."""
    right = (offline.argmax(1) == fashion_test.labels[:600]) & (offline.max(1) > 0.9)
    firsts = [int(np.flatnonzero(right & (fashion_test.labels[:600] == c))[0]) for c in range(10)]
    return np.array(firsts + [i for i in np.flatnonzero(right) if i not in firsts][:10])


def test_one_garment_exact_body(client, fashion_test, known, offline):
    index = known[1]  # a trouser
    response = client.post("/predict/fashion", files=[png_part("files", digit_image(fashion_test.images[index]), "item.png")])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "fashion:1.0.0" and set(body) == {"model", "predictions"}
    (prediction,) = body["predictions"]
    assert set(prediction) == {"label", "index", "probability", "probabilities"}
    assert prediction["label"] == "Trouser" and prediction["index"] == 1
    assert list(prediction["probabilities"]) == CLASSES
    assert prediction["probability"] == max(prediction["probabilities"].values()) == pytest.approx(offline[index].max(), abs=1e-5)
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("photo", [False, True], ids=["light on black", "dark on white, 4x, JPEG"])
def test_every_class_in_order_in_either_polarity(client, fashion_test, known, photo):
    files = []
    for k, index in enumerate(known[:10]):
        image = digit_image(fashion_test.images[index], size=112 if photo else None, black_on_white=photo,
                            mode="RGB" if photo else "L")
        files.append(("files", (f"g{k}.jpg", encode(image, "JPEG", quality=95), "image/jpeg")) if photo
                     else png_part("files", image, f"g{k}.png"))
    response = client.post("/predict/fashion", files=files)
    assert response.status_code == 200, response.text
    assert [p["label"] for p in response.json()["predictions"]] == CLASSES


def test_service_reads_the_test_split_as_the_checkpoint_does(client, fashion_test, offline, fashion_checkpoint):
    """600 test images uploaded as PNGs, 100 per request: every label is the one the model gives
    offline, and the accuracy is the checkpoint's (within sampling error)."""
    labels = []
    for start in range(0, 600, 100):
        files = [png_part("files", digit_image(raw), f"{start + k}.png") for k, raw in enumerate(fashion_test.images[start : start + 100])]
        response = client.post("/predict/fashion", files=files)
        assert response.status_code == 200, response.text
        labels += [p["index"] for p in response.json()["predictions"]]
    assert labels == offline.argmax(1).tolist()
    accuracy = float(np.mean(np.array(labels) == fashion_test.labels[:600]))
    assert accuracy >= fashion_checkpoint.metadata["metrics"]["test_accuracy"] - 0.03


def test_blank_image_is_a_clear_422(client):
    blank = Image.new("L", (64, 64), 255)
    response = client.post("/predict/fashion", files=[png_part("files", blank, "white.png")])
    assert response.status_code == 422
    assert response.json() == {"code": "no_garment_found",
                               "detail": "files 'white.png': the image is blank: no ink stands out from the background"}


def test_not_an_image_and_no_files(client):
    response = client.post("/predict/fashion", files=[("files", ("notes.txt", b"hello, not an image", "text/plain"))])
    assert response.status_code == 415
    assert response.json() == {"code": "unsupported_media_type",
                               "detail": "files 'notes.txt' is not an image in a supported format (PNG, JPEG, BMP, GIF, WEBP, TIFF)"}
    response = client.post("/predict/fashion", files=[("other", ("x.png", b"\x89PNG", "image/png"))])
    assert response.status_code == 422
    assert response.json() == {"code": "invalid_request", "detail": "missing field 'files'"}
