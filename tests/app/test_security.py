"""The optional API key and CORS: off/closed by default, enforced when configured."""

from __future__ import annotations

import logging

import pytest

from tests.app.conftest import make_client, png_part
from training.strips import digit_image

KEY = "s3cret-key-for-tests"
UNAUTHORIZED = {"code": "unauthorized",
                "detail": "missing or invalid API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"}


@pytest.fixture(scope="module")
def keyed():
    with make_client(api_key=KEY) as client:
        yield client


def test_no_key_needed_by_default(client, mnist_test):
    response = client.post("/predict/digit", files=[png_part("files", digit_image(mnist_test.images[0]))])
    assert response.status_code == 200


def test_key_required_when_set(keyed, mnist_test, caplog):
    part = png_part("files", digit_image(mnist_test.images[0]))
    with caplog.at_level(logging.DEBUG):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": KEY[:-1]}, {"Authorization": KEY}):
            response = keyed.post("/predict/digit", files=[part], headers=headers)
            assert response.status_code == 401, headers
            assert response.json() == UNAUTHORIZED
            assert response.headers["www-authenticate"] == "Bearer"
        for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}):
            response = keyed.post("/predict/digit", files=[part], headers=headers)
            assert response.status_code == 200 and response.json()["predictions"][0]["label"] == 7
    assert not any(KEY in record.getMessage() for record in caplog.records)
    assert keyed.get("/models").status_code == 401 and keyed.get("/metrics").status_code == 401
    assert keyed.get("/models", headers={"X-API-Key": KEY}).status_code == 200


def test_health_readiness_and_docs_stay_open(keyed):
    assert keyed.get("/healthz").status_code == 200
    assert keyed.get("/readyz").status_code == 200
    assert keyed.get("/docs").status_code == 200
    schemes = keyed.get("/openapi.json").json()["components"]["securitySchemes"]
    assert {"HTTPBearer", "APIKeyHeader"} <= set(schemes)


def test_cors_closed_by_default_and_open_to_configured_origins(client):
    preflight = {"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}
    response = client.options("/predict/digit", headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    with make_client(cors_origins="https://example.org, https://other.example") as open_client:
        response = open_client.options("/predict/digit", headers=preflight)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://example.org"
        denied = open_client.options("/predict/digit", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in denied.headers


def test_settings_from_the_environment(monkeypatch):
    from app.settings import Settings

    monkeypatch.setenv("API_KEY", KEY)
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
    settings = Settings()
    assert settings.api_key.get_secret_value() == KEY and KEY not in repr(settings)
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    monkeypatch.setenv("API_KEY", "")
    monkeypatch.delenv("CORS_ORIGINS")
    assert Settings().api_key is None and Settings().cors_origins == []


def test_a_body_trickled_slowly_is_cut_off_and_others_are_still_served(mnist_test):
    """A client sending its upload a few bytes at a time gets 408 once BODY_TIMEOUT_SECONDS have
    passed, and a normal request is answered meanwhile."""
    import http.client
    import json
    import socket
    import time
    from urllib.parse import urlparse

    import httpx

    from bench.processes import running_service
    from training.strips import digit_image, encode

    with running_service(BODY_TIMEOUT_SECONDS="1.5") as service:
        address = urlparse(service.url)
        slow = socket.create_connection((address.hostname, address.port))
        slow.sendall(b"POST /predict/digit HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: 100000\r\n\r\n--b\r\n")
        started = time.monotonic()
        upload = {"files": ("d.png", encode(digit_image(mnist_test.images[0])), "image/png")}
        assert httpx.post(service.url + "/predict/digit", files=upload, timeout=10).status_code == 200
        slow.settimeout(0.2)
        while time.monotonic() - started < 10:
            try:  # peek, so that no byte is sent once the server has answered (or closed)
                slow.recv(1, socket.MSG_PEEK)
                break
            except TimeoutError:
                slow.sendall(b"x")  # nothing yet: a byte at a time, every 0.2 s
        slow.settimeout(5)
        response = http.client.HTTPResponse(slow)  # reads the whole answer, however it is segmented
        response.begin()
        body = json.loads(response.read())
        slow.close()
        assert response.status == 408, body
        assert body["code"] == "request_timeout"
        assert time.monotonic() - started > 1.4  # cut off by its timeout, not before


def test_connections_that_send_nothing_are_closed_and_others_are_still_served(mnist_test):
    """A hundred connections that never send a byte are closed after KEEP_ALIVE_SECONDS (uvicorn
    alone keeps them open for ever), while a normal request is answered meanwhile."""
    import socket
    import time
    from urllib.parse import urlparse

    import httpx

    from bench.processes import running_service
    from training.strips import digit_image, encode

    with running_service(KEEP_ALIVE_SECONDS="1") as service:
        address = urlparse(service.url)
        silent = [socket.create_connection((address.hostname, address.port)) for _ in range(100)]
        upload = {"files": ("d.png", encode(digit_image(mnist_test.images[0])), "image/png")}
        assert httpx.post(service.url + "/predict/digit", files=upload, timeout=10).status_code == 200
        time.sleep(2.5)
        closed = 0
        for connection in silent:
            connection.settimeout(2)
            try:
                closed += connection.recv(1) == b""  # the service closed it
            except TimeoutError:
                pass
            connection.close()
        assert closed == len(silent)
        assert httpx.post(service.url + "/predict/digit", files=upload, timeout=10).status_code == 200
