"""The Open Inference Protocol (v2) routes, called by the clients platform teams use:
``tritonclient[http]`` (binary tensors by default, JSON on request) and the ``kserve`` client's
``InferenceRESTClient``, against the service started as ``make serve`` starts it, with real MNIST
test digits and exact labels. In-process tests pin what the clients do not exercise: the same
answers as ``/predict/digit``, the protocol's error bodies, the API key."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from tritonclient.utils import InferenceServerException

from bench.processes import running_service
from model.preprocess import normalise, preprocess_digits
from tests.app.conftest import correct_indices, make_client, png_part
from training.strips import digit_image, encode, make_strip

COUNT = 12


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    with running_service() as service:
        yield service.url


@pytest.fixture(scope="module")
def known(mnist_test, digit_checkpoint) -> np.ndarray:
    return correct_indices(mnist_test, digit_checkpoint, COUNT)


def _pngs(mnist_test, indices) -> np.ndarray:
    return np.array([encode(digit_image(mnist_test.images[i], black_on_white=True)) for i in indices], dtype=object)


def _pixels(mnist_test, indices) -> np.ndarray:
    """What a client that preprocesses itself sends: the training normalisation, [N, 1, 28, 28]."""
    return normalise(preprocess_digits([mnist_test.images[i].astype(np.float32) / 255 for i in indices])).numpy()


@pytest.fixture(scope="module")
def triton_client(served) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=served.removeprefix("http://"))
    yield client
    client.close()


def test_tritonclient_sees_a_live_ready_server_and_its_models(triton_client):
    assert triton_client.is_server_live() and triton_client.is_server_ready()
    assert {"binary_tensor_data"} <= set(triton_client.get_server_metadata()["extensions"])
    for name in ("digit", "fashion", "digit_sum", "sequence"):
        assert triton_client.is_model_ready(name)
    metadata = triton_client.get_model_metadata("digit")
    assert metadata["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]},
                                  {"name": "pixels", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    assert metadata["outputs"] == [{"name": "label", "datatype": "INT64", "shape": [-1]},
                                   {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]
    assert not triton_client.is_model_ready("no_such_model")


@pytest.mark.parametrize("binary_in", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize("binary_out", [True, False], ids=["binary-out", "json-out"])
def test_tritonclient_reads_digits_from_pixels(triton_client, mnist_test, known, binary_in, binary_out):
    pixels = _pixels(mnist_test, known)
    tensor = triton.InferInput("pixels", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels, binary_data=binary_in)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary_out) for name in ("label", "probabilities")]
    result = triton_client.infer("digit", [tensor], outputs=outputs)
    assert result.as_numpy("label").tolist() == mnist_test.labels[known].tolist()
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (COUNT, 10) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_tritonclient_reads_encoded_images_and_every_model(triton_client, mnist_test, known, rng):
    images = triton.InferInput("image", [COUNT], "BYTES")
    images.set_data_from_numpy(_pngs(mnist_test, known))  # binary: BYTES elements as raw PNG bytes
    result = triton_client.infer("digit", [images])  # no outputs named: every output, binary
    assert result.as_numpy("label").tolist() == mnist_test.labels[known].tolist()

    numbers = triton.InferInput("number", [COUNT], "INT64")
    numbers.set_data_from_numpy(np.arange(-6, 6, dtype=np.int64) * 37)
    result = triton_client.infer("digit_sum", [images, numbers], outputs=[triton.InferRequestedOutput("sum")])
    assert result.as_numpy("sum").tolist() == (mnist_test.labels[known] + np.arange(-6, 6) * 37).tolist()
    assert result.as_numpy("digit") is None  # only what was asked for

    strip = make_strip(mnist_test.images[known[:6]], mnist_test.labels[known[:6]], rng, height=60)
    tensor = triton.InferInput("strip", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([encode(strip.image)], dtype=object))
    result = triton_client.infer("sequence", [tensor])
    assert result.as_numpy("digits").tolist() == strip.labels
    assert bool(result.as_numpy("contains_4")[0]) == (4 in strip.labels)


def test_tritonclient_gets_the_protocols_errors(triton_client, mnist_test, known):
    pixels = triton.InferInput("pixels", [1, 1, 28, 27], "FP32")
    pixels.set_data_from_numpy(np.zeros((1, 1, 28, 27), np.float32))
    with pytest.raises(InferenceServerException) as error:
        triton_client.infer("digit", [pixels])
    assert error.value.status() == "400" and "shape" in error.value.message()
    images = triton.InferInput("image", [1], "BYTES")
    images.set_data_from_numpy(_pngs(mnist_test, known[:1]))
    with pytest.raises(InferenceServerException) as error:
        triton_client.infer("digits", [images])
    assert error.value.status() == "404"


def test_kserve_client_reads_digits(served, mnist_test, known):
    async def run() -> tuple[bool, bool, list[int], list[int]]:
        async with InferenceRESTClient(RESTConfig(protocol="v2", timeout=60)) as client:
            ready = await client.is_server_ready(served) and await client.is_model_ready(served, "digit")
            live = await client.is_server_live(served)
            pixels = InferInput("pixels", [COUNT, 1, 28, 28], "FP32")
            pixels.set_data_from_numpy(_pixels(mnist_test, known), binary_data=False)
            json_result = await client.infer(served, InferRequest("digit", [pixels]), model_name="digit")
            images = InferInput("image", [COUNT], "BYTES")
            images.set_data_from_numpy(_pngs(mnist_test, known), binary_data=True)
            binary_result = await client.infer(served, InferRequest("digit", [images]), model_name="digit")
            return (ready, live, json_result.outputs[0].as_numpy().tolist(), binary_result.outputs[0].as_numpy().tolist())

    ready, live, from_pixels, from_images = asyncio.run(run())
    assert ready and live
    assert from_pixels == mnist_test.labels[known].tolist()
    assert from_images == mnist_test.labels[known].tolist()


def _json_outputs(response) -> dict[str, np.ndarray]:
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in response.json()["outputs"]}


def test_the_same_answers_as_the_upload_route(client, mnist_test, known):
    upload = client.post("/predict/digit", files=[png_part("files", digit_image(mnist_test.images[i], black_on_white=True))
                                                  for i in known]).json()["predictions"]
    from_images = _json_outputs(client.post("/v2/models/digit/infer", json={"inputs": [
        {"name": "image", "datatype": "BYTES", "shape": [COUNT],
         "data": [base64.b64encode(png).decode() for png in _pngs(mnist_test, known)]}]}))
    pixels = _pixels(mnist_test, known)
    from_pixels = _json_outputs(client.post("/v2/models/digit/infer", json={"inputs": [
        {"name": "pixels", "datatype": "FP32", "shape": list(pixels.shape), "data": pixels.ravel().tolist()}]}))
    for outputs in (from_images, from_pixels):
        assert outputs["label"].tolist() == [p["label"] for p in upload]
        np.testing.assert_allclose(outputs["probabilities"], [p["probabilities"] for p in upload], atol=1e-6)


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": [0.0] * 10}]}, 400, "values for shape"),
    ({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": ["a"] * 784}]}, 400, "FP32"),
    ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["not base64!"]}]}, 400, "base64"),
    ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(b"no image").decode()]}]},
     400, "not an image"),
    ({"inputs": [{"name": "colour", "datatype": "FP32", "shape": [1], "data": [1.0]}]}, 400, "no input 'colour'"),
    ({"inputs": []}, 400, "inputs"),
    ({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": [0.5] * 784}],
      "outputs": [{"name": "logits"}]}, 400, "no output 'logits'"),
])
def test_a_bad_request_gets_the_protocols_error(client, body, status, words):
    response = client.post("/v2/models/digit/infer", json=body)
    assert response.status_code == status, response.text
    assert words in response.json()["error"] and response.json()["code"]


def test_a_blank_digit_is_refused_not_guessed(client):
    blank = base64.b64encode(encode(digit_image(np.zeros((28, 28), np.uint8)))).decode()
    response = client.post("/v2/models/digit/infer", json={"inputs": [
        {"name": "image", "datatype": "BYTES", "shape": [1], "data": [blank]}]})
    assert response.status_code == 400 and response.json()["code"] == "no_digit_found"


def test_unknown_models_and_versions_are_404(client):
    unknown = client.get("/v2/models/digits")
    assert unknown.status_code == 404 and unknown.json() == {
        "error": "unknown model 'digits'; the models: digit, fashion, digit_sum, sequence", "code": "not_found"}
    assert client.get("/v2/models/digit/versions/9.9.9/ready").status_code == 404
    response = client.post("/v2/models/digit/versions/9.9.9/infer", json={"inputs": []})
    version = client.get("/v2/models/digit").json()["versions"][0]
    assert response.status_code == 404 and f"it serves version '{version}'" in response.json()["error"]
    assert client.get(f"/v2/models/digit/versions/{version}").json()["name"] == "digit"
    assert client.get(f"/v2/models/digit/versions/{version}/ready").json() == {"name": "digit", "ready": True}


def test_the_api_key_guards_the_models_not_the_health_routes():
    with make_client(api_key="s3cret") as secured:
        assert secured.get("/v2/health/ready").json() == {"ready": True}
        assert secured.get("/v2/models/digit").status_code == 401
        body = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": [0.0] * 784}]}
        assert secured.post("/v2/models/digit/infer", json=body).status_code == 401
        assert secured.post("/v2/models/digit/infer", json=body, headers={"X-API-Key": "s3cret"}).status_code == 200


def _binary(head: dict, tail: bytes, length: int | None = None) -> tuple[bytes, dict[str, str]]:
    encoded = json.dumps(head).encode()
    return encoded + tail, {"Inference-Header-Content-Length": str(len(encoded) if length is None else length),
                            "Content-Type": "application/octet-stream"}


PIXELS_HEAD = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 1, 28, 28],
                           "parameters": {"binary_data_size": 784 * 4}}]}


@pytest.mark.parametrize(("body", "words"), [
    (_binary(PIXELS_HEAD, b"\0" * (784 * 4 - 1)), "runs past the body"),
    (_binary(PIXELS_HEAD, b"\0" * (784 * 4 + 5)), "after the last binary input"),
    (_binary(PIXELS_HEAD, b"\0" * 784 * 4, length=10**9), "no larger than the body"),
    (_binary(PIXELS_HEAD, b"\0" * 784 * 4, length=3), "not valid JSON"),
    (_binary({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 8}}]},
             b"\xff\xff\xff\x7f\0\0\0\0"), "runs past the binary data"),
    (_binary({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": -4}}]},
             b""), "binary_data_size"),
])
def test_malformed_binary_tensors_are_400(client, body, words):
    data, headers = body
    response = client.post("/v2/models/digit/infer", content=data, headers=headers)
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]


def test_binary_outputs_come_back_as_the_extension_says(client):
    pixels = np.full((2, 1, 28, 28), -0.1307 / 0.3081, np.float32)  # background, normalised
    pixels[:, :, 4:24, 13:15] = (1 - 0.1307) / 0.3081  # a vertical bar of full ink: a "1"
    head = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [2, 1, 28, 28],
                        "parameters": {"binary_data_size": pixels.nbytes}}],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}, {"name": "label"}], "id": "req-7"}
    data, headers = _binary(head, pixels.tobytes())
    response = client.post("/v2/models/digit/infer", content=data, headers=headers)
    assert response.status_code == 200 and response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers["Inference-Header-Content-Length"])
    meta = json.loads(response.content[:length])
    assert meta["id"] == "req-7" and [o["name"] for o in meta["outputs"]] == ["probabilities", "label"]
    assert meta["outputs"][0]["parameters"]["binary_data_size"] == 2 * 10 * 4
    probabilities = np.frombuffer(response.content[length:], dtype="<f4").reshape(2, 10)
    assert meta["outputs"][1]["data"] == probabilities.argmax(1).tolist() == [1, 1]
