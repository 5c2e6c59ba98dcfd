"""Batching across requests, the bounded queue and the deadline, through the real HTTP app.

Each test makes its own app so its settings (batch size, waits, limits) and metrics are its own.
A batch wait of a minute means only a full batch can start a pass: which requests share a pass
is then decided by the test, not by timing.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.app.conftest import correct_indices, make_client, metric, png_part, wait_for_in_flight
from training.strips import digit_image, encode

MINUTE_MS = 60_000
OVERLOADED = {"detail": "the service is at capacity; retry shortly", "code": "overloaded"}
DEADLINE = {"detail": "the request waited longer than the service's deadline; retry shortly", "code": "deadline_exceeded"}


@pytest.fixture(scope="module")
def known(mnist_test, digit_checkpoint) -> np.ndarray:
    return correct_indices(mnist_test, digit_checkpoint, 8, start=500)


def _post_digit(client, image) -> tuple[int, dict, dict]:
    response = client.post("/predict/digit", files=[png_part("files", image)])
    return response.status_code, response.json(), dict(response.headers)


def test_concurrent_requests_share_one_forward_pass(mnist_test, known):
    images = [digit_image(mnist_test.images[i], black_on_white=bool(i % 2)) for i in known]
    with make_client(batch_max_size=8, batch_max_wait_ms=MINUTE_MS) as client, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda image: _post_digit(client, image), images))
        assert [status for status, _, _ in results] == [200] * 8
        assert [body["predictions"][0]["label"] for _, body, _ in results] == [int(mnist_test.labels[i]) for i in known]
        assert metric(client, "inference_batch_requests_count", '{model="digit"}') == 1
        assert metric(client, "inference_batch_requests_sum", '{model="digit"}') == 8
        assert metric(client, "inference_batch_size_sum", '{model="digit"}') == 8


def test_batched_answers_equal_unbatched_ones(mnist_test, known):
    images = [digit_image(mnist_test.images[i], size=90, black_on_white=True) for i in known[:3]]
    files = [png_part("files", image) for image in images]
    with make_client() as batched, make_client(batching=False) as unbatched:
        for path, extra in (("/predict/digit", {}), ("/predict/sequence", {}), ("/predict/digit-sum", {"number": "41"}),
                            ("/predict/fashion", {})):
            parts = files[:1] if path == "/predict/digit-sum" else files
            if path == "/predict/digit-sum":
                parts = [("file", parts[0][1])]
            one, two = batched.post(path, files=parts, data=extra), unbatched.post(path, files=parts, data=extra)
            assert one.status_code == two.status_code == 200, (one.text, two.text)
            assert one.json() == two.json()


def test_a_bad_upload_fails_alone_in_its_batch(mnist_test, known):
    good = [digit_image(mnist_test.images[i]) for i in known[:2]]
    truncated = encode(digit_image(mnist_test.images[known[2]], size=64))
    truncated = truncated[: len(truncated) // 2]

    def send(item):
        if isinstance(item, bytes):
            response = client.post("/predict/digit", files=[("files", ("broken.png", item, "image/png"))])
            return response.status_code, response.json()
        status, body, _ = _post_digit(client, item)
        return status, body

    with make_client(batch_max_size=3, batch_max_wait_ms=MINUTE_MS) as client, ThreadPoolExecutor(3) as pool:
        first, bad, second = pool.map(send, [good[0], truncated, good[1]])
        assert metric(client, "inference_batch_requests_sum", '{model="digit"}') == 2  # the bad one never reached the model
    assert (first[0], second[0]) == (200, 200)
    assert first[1]["predictions"][0]["label"] == mnist_test.labels[known[0]]
    assert bad == (422, {"detail": "files 'broken.png' could not be decoded: image file is truncated", "code": "corrupt_image"})


def test_overload_is_refused_at_once_then_deadline_then_normal_service(mnist_test, known):
    image = digit_image(mnist_test.images[known[0]])
    settings = {"max_pending_requests": 2, "batch_max_size": 3, "batch_max_wait_ms": MINUTE_MS, "request_timeout_seconds": 2}
    with make_client(**settings) as client, ThreadPoolExecutor(3) as pool:
        waiting = [pool.submit(_post_digit, client, image) for _ in range(2)]  # their batch of 3 never fills
        wait_for_in_flight(client, 2)

        status, body, headers = _post_digit(client, image)
        assert (status, body, headers["retry-after"]) == (503, OVERLOADED, "1")
        assert metric(client, "prediction_requests_rejected_total", '{reason="overloaded"}') == 1

        for future in waiting:  # 2 s after they arrived, the two waiting requests give up
            status, body, headers = future.result(timeout=30)
            assert (status, body, headers["retry-after"]) == (503, DEADLINE, "1")
        assert metric(client, "inference_batch_requests_count", '{model="digit"}') == 0, "expired work must not run"
        assert metric(client, "inference_queue_depth", '{model="digit"}') == 0, "expired work must leave the queue"

        # and right after, the service answers normally: one request of three digits fills a batch
        response = client.post("/predict/digit", files=[png_part("files", image)] * 3)
        assert response.status_code == 200
        assert [p["label"] for p in response.json()["predictions"]] == [mnist_test.labels[known[0]]] * 3
        assert metric(client, "inference_batch_size_sum", '{model="digit"}') == 3
        assert metric(client, "inference_queue_depth", '{model="digit"}') == 0


def test_sequences_of_different_lengths_share_a_pass_and_keep_their_answers(mnist_test, known):
    short = [png_part("files", digit_image(mnist_test.images[i])) for i in known[:3]]
    long = [png_part("files", digit_image(mnist_test.images[i], black_on_white=True)) for i in known[2:7]]
    with make_client(batching=False) as alone:
        expected = [alone.post("/predict/sequence", files=files).json() for files in (short, long)]
    # 3 + 5 digits fill a batch of 8: both sequences go through the CNN-LSTM in one packed pass
    with make_client(batch_max_size=8, batch_max_wait_ms=MINUTE_MS) as client, ThreadPoolExecutor(2) as pool:
        responses = list(pool.map(lambda files: client.post("/predict/sequence", files=files), (short, long)))
        assert metric(client, "inference_batch_requests_sum", '{model="sequence"}') == 2
        assert metric(client, "inference_batch_requests_count", '{model="sequence"}') == 1
    assert [r.status_code for r in responses] == [200, 200]
    for got, want in zip((r.json() for r in responses), expected):
        # equal up to float rounding: a packed batch sums in another order than a lone sequence
        assert {k: v for k, v in got.items() if k != "probability"} == {k: v for k, v in want.items() if k != "probability"}
        assert got["probability"] == pytest.approx(want["probability"], rel=1e-5, abs=1e-7)
    assert [d["label"] for d in expected[1]["digits"]] == [int(mnist_test.labels[i]) for i in known[2:7]]


def test_a_lone_request_starts_its_pass_at_once(mnist_test, known):
    """By default a batch starts as soon as the model is free: one request at a time, each
    waits in the queue for no batch wait at all (well under 25 ms, where a 200 ms batch wait,
    the contrast, holds each one 200 ms), and runs alone."""
    image = digit_image(mnist_test.images[known[0]])
    for wait_ms, low, high in ((None, 0.0, 0.025), (200, 0.2, 10.0)):
        settings = {} if wait_ms is None else {"batch_max_wait_ms": wait_ms}
        with make_client(**settings) as client:
            for _ in range(5):
                assert _post_digit(client, image)[0] == 200
            count = metric(client, "inference_queue_wait_seconds_count", '{model="digit"}')
            total = metric(client, "inference_queue_wait_seconds_sum", '{model="digit"}')
            assert count == 5
            assert 5 * low <= total <= 5 * high
            assert metric(client, "inference_batch_requests_bucket", '{le="1.0",model="digit"}') == 5


def test_concurrent_requests_still_share_passes_without_a_batch_wait(mnist_test, known):
    """With no batch wait, requests that arrive while a pass runs form the next batch."""
    images = [digit_image(mnist_test.images[i]) for i in known]
    with make_client() as client, ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda k: _post_digit(client, images[k % len(images)])[0], range(96)))
        assert statuses == [200] * 96
        passes = metric(client, "inference_batch_requests_count", '{model="digit"}')
        assert metric(client, "inference_batch_requests_sum", '{model="digit"}') == 96
        assert passes < 96  # some pass served more than one request
