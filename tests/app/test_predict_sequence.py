"""POST /predict/sequence: strips and ordered lists of MNIST test digits."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.app.conftest import correct_indices, make_client, png_part
from tests.imaging import digit_image, make_strip


@pytest.fixture(scope="module")
def known(mnist_test, digit_checkpoint) -> np.ndarray:
    return correct_indices(mnist_test, digit_checkpoint, 40, start=100)


def _check(body: dict, labels: list[int]) -> None:
    assert set(body) == {"model", "contains_4", "probability", "length", "digits"}
    assert body["model"] == "sequence:1.0.0"
    assert body["length"] == len(labels)
    assert [d["label"] for d in body["digits"]] == labels
    assert all(set(d) == {"label", "probability"} for d in body["digits"])
    assert body["contains_4"] == (4 in labels)
    assert body["contains_4"] == (body["probability"] >= 0.5)


@pytest.mark.parametrize("black_on_white", [True, False])
def test_strip_with_uneven_spacing(client, mnist_test, known, black_on_white):
    rng = np.random.default_rng(5 + black_on_white)
    for length in (3, 7, 12):
        index = rng.choice(known, length, replace=False)
        strip = make_strip(mnist_test.images[index], mnist_test.labels[index], rng, black_on_white=black_on_white)
        response = client.post("/predict/sequence", files=[png_part("strip", strip.image, name="strip.png")])
        assert response.status_code == 200, response.text
        _check(response.json(), strip.labels)


def test_strip_with_and_without_a_four(client, mnist_test, known):
    rng = np.random.default_rng(9)
    fours = [i for i in known if mnist_test.labels[i] == 4][:1]
    others = [i for i in known if mnist_test.labels[i] != 4][:6]
    for index in (np.array(others), np.array(others[:3] + fours + others[3:])):
        strip = make_strip(mnist_test.images[index], mnist_test.labels[index], rng, height=90)
        body = client.post("/predict/sequence", files=[png_part("strip", strip.image, fmt="JPEG", mime="image/jpeg",
                                                                name="s.jpg", quality=92)]).json()
        _check(body, strip.labels)
        assert body["probability"] > 0.95 if 4 in strip.labels else body["probability"] < 0.05


def test_strip_of_touching_digits(client, mnist_test):
    """Test digits 5553, 5437 and 3301 written with no gap: the "1" touches the "7", and the
    service, its glyph counter telling the merged pair from one wide digit, reads all three."""
    rng = np.random.default_rng(109)
    index = rng.integers(0, len(mnist_test), 3)
    strip = make_strip(mnist_test.images[index], mnist_test.labels[index], rng, height=80, max_gap=0.0)
    body = client.post("/predict/sequence", files=[png_part("strip", strip.image)]).json()
    _check(body, [1, 7, 2])


def test_ordered_list_of_files(client, mnist_test, known):
    index = known[:9]
    files = [png_part("files", digit_image(mnist_test.images[i], size=80, black_on_white=k % 2 == 0)) for k, i in enumerate(index)]
    response = client.post("/predict/sequence", files=files)
    assert response.status_code == 200
    _check(response.json(), mnist_test.labels[index].tolist())


def test_shape_errors(client, mnist_test):
    digit = png_part("files", digit_image(mnist_test.images[0]))
    strip_part = png_part("strip", digit_image(mnist_test.images[0]))
    blank = png_part("strip", Image.new("L", (300, 60), 255), name="blank.png")
    exactly_one = {"code": "invalid_request", "detail": "send exactly one of 'strip' (one image) or 'files' (digit images)"}
    assert client.post("/predict/sequence", files=[strip_part, digit]).json() == exactly_one
    response = client.post("/predict/sequence", data={"unrelated": "x"})
    assert response.status_code == 422 and response.json() == exactly_one
    response = client.post("/predict/sequence", files=[strip_part, strip_part])
    assert response.status_code == 422
    assert response.json() == {"code": "invalid_request", "detail": "field 'strip' must be sent once"}
    response = client.post("/predict/sequence", files=[blank])
    assert response.status_code == 422
    assert response.json() == {"code": "no_digit_found",
                               "detail": "strip 'blank.png': the image is blank: no ink stands out from the background"}


def test_too_many_digits(mnist_test, known):
    rng = np.random.default_rng(2)
    strip = make_strip(mnist_test.images[known[:5]], mnist_test.labels[known[:5]], rng, height=60, max_gap=0.5)
    with make_client(max_sequence_digits=4) as client:
        response = client.post("/predict/sequence", files=[png_part("strip", strip.image, name="five.png")])
        assert response.status_code == 422
        assert response.json() == {"code": "too_many_digits", "detail": "strip 'five.png' holds 5 digits; the limit is 4"}
        files = [png_part("files", digit_image(mnist_test.images[i])) for i in known[:5]]
        assert client.post("/predict/sequence", files=files).json() == {
            "code": "too_many_digits", "detail": "5 digit images sent; the limit is 4"}
