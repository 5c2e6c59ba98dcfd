"""Graceful shutdown of the real process: on SIGTERM readiness turns 503 at once, a request in
flight still gets its answer, and the process exits 0."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator

import httpx

from bench.processes import running_service
from tests.app.conftest import wait_for_in_flight
from training.strips import digit_image, encode


def test_sigterm_drains_and_exits_zero(mnist_test):
    boundary = "digitserve-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"d.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()
    body = head + encode(digit_image(mnist_test.images[0])) + f"\r\n--{boundary}--\r\n".encode()
    half_sent, release = threading.Event(), threading.Event()

    def slow_upload() -> Iterator[bytes]:
        """The first half of the body, then wait: the request is in flight until released."""
        yield body[: len(body) // 2]
        half_sent.set()
        release.wait(timeout=60)
        yield body[len(body) // 2 :]

    result: dict[str, httpx.Response] = {}

    def in_flight(url: str) -> None:
        result["response"] = httpx.post(f"{url}/predict/digit", content=slow_upload(), timeout=60,
                                        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})

    with running_service(SHUTDOWN_DRAIN_SECONDS="30", SHUTDOWN_TIMEOUT_SECONDS="20") as service:
        with httpx.Client(base_url=service.url, timeout=10) as client:
            assert client.get("/readyz").status_code == 200
            sender = threading.Thread(target=in_flight, args=(service.url,))
            sender.start()
            assert half_sent.wait(timeout=30)
            # Half the body sent is not yet the request admitted: the server may not have
            # accepted the connection. The in-flight gauge counts it once the door has let it in.
            wait_for_in_flight(client, 1)

            service.process.send_signal(signal.SIGTERM)
            service.read_until("not ready; draining for 30.0 s")
            response = client.get("/readyz")
            assert response.status_code == 503 and response.json()["code"] == "not_ready"

            service.process.send_signal(signal.SIGTERM)  # a second signal ends the drain now
            release.set()
            sender.join(timeout=30)
        assert service.process.wait(timeout=30) == 0
        service.read_until("shutting down")
    response = result["response"]
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] == 7
