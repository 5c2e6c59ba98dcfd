"""Health, readiness, model listing, metrics, docs, request ids, start-up faults, unknown errors."""

from __future__ import annotations

import logging
import pickle
import re
import shutil

import pytest
from fastapi.testclient import TestClient

from app.handlers.digit import DigitHandler
from app.main import create_app
from app.settings import Settings
from model.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_manifest,
    save_checkpoint,
    sha256_file,
)
from tests.app.conftest import make_client, png_part
from tests.conftest import ROOT, WEIGHTS
from training.strips import digit_image


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 200 and response.json() == {"status": "ready"}


def test_not_ready_before_the_models_are_loaded(mnist_test):
    client = make_client()  # not entered: the lifespan has not run, no model is loaded
    response = client.get("/readyz")
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert response.json() == {"code": "not_ready", "detail": "models not loaded, or shutting down"}
    response = client.post("/predict/digit", files=[png_part("files", digit_image(mnist_test.images[0]))])
    assert response.status_code == 503 and response.json()["code"] == "not_ready"
    assert client.get("/healthz").status_code == 200


def test_models_lists_what_is_loaded(client):
    body = client.get("/models").json()
    manifest = read_manifest(WEIGHTS)
    assert [m["name"] for m in body["models"]] == ["digit", "sequence", "digit_sum", "fashion", "line_reader"]
    for info in body["models"]:
        checkpoint = load_checkpoint(WEIGHTS / info["file"])
        assert info["sha256"] == manifest[info["file"]]
        assert info["id"] == f"{info['name']}:{checkpoint.metadata['version']}"
        assert info["parameters"] == sum(p.numel() for p in checkpoint.model.parameters())
        assert info["device"] == "cpu"
        assert info["metrics"] == checkpoint.metadata["metrics"]
        assert info["architecture"] == checkpoint.metadata["architecture"]
    reports = {m["name"]: m["reports"] for m in body["models"]}
    assert reports == {"digit": ["docs/studies/error-gallery.md", "docs/studies/calibration.md", "docs/studies/architectures.md"],
                       "sequence": ["docs/studies/label-noise.md"], "digit_sum": [],
                       "fashion": ["docs/studies/architectures.md"], "line_reader": ["docs/strip-reading.md"]}
    garments = next(m for m in body["models"] if m["name"] == "fashion")
    assert garments["labels"] == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                                  "Bag", "Ankle boot"]
    assert all((ROOT / path).is_file() for paths in reports.values() for path in paths)


def test_metrics_count_requests_by_endpoint_and_status(client, mnist_test):
    client.post("/predict/digit", files=[png_part("files", digit_image(mnist_test.images[0]))] * 3)
    client.post("/predict/digit", files=[("files", ("x.txt", b"nope", "text/plain"))])
    text = client.get("/metrics").text
    assert re.search(r'http_requests_total\{endpoint="/predict/digit",method="POST",status="200"\} [1-9]', text)
    assert re.search(r'http_requests_total\{endpoint="/predict/digit",method="POST",status="415"\} [1-9]', text)
    assert 'http_request_duration_seconds_bucket{endpoint="/predict/digit"' in text
    assert re.search(r'inference_batch_size_bucket\{le="4.0",model="digit"\} [1-9]', text)
    assert re.search(r'images_processed_total\{endpoint="/predict/digit"\} [1-9]', text)
    assert "inference_duration_seconds_count" in text


def test_request_id_is_echoed_or_made(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    assert re.fullmatch(r"[0-9a-f]{32}", client.get("/healthz").headers["x-request-id"])


def test_one_structured_log_line_per_request(client, caplog):
    with caplog.at_level(logging.INFO, logger="app.access"):
        client.get("/healthz", headers={"X-Request-ID": "log-me"})
    lines = [r.getMessage() for r in caplog.records if r.name == "app.access"]
    assert len(lines) == 1
    assert re.fullmatch(r'\{"event": "request", "method": "GET", "path": "/healthz", "status": 200, '
                        r'"duration_ms": [0-9.]+, "request_id": "log-me"\}', lines[0])


@pytest.mark.parametrize("path", ["/", "/docs"])
def test_the_page_and_the_docs_are_served_without_a_cdn(client, path):
    html = client.get(path).text
    assert "cdn" not in html.lower()
    scripts = re.findall(r'src="([^"]+\.js)"', html) + re.findall(r'href="([^"]+\.css)"', html)
    assert scripts and all(s.startswith("/") for s in scripts)
    for asset in scripts:
        response = client.get(asset)
        assert response.status_code == 200
        if path == "/":  # our own page fetches nothing from anywhere else
            assert "http://" not in response.text and "https://" not in response.text
    assert "cdn" not in client.get("/redoc").text.lower()
    spec = client.get("/openapi.json").json()
    for path in ("/predict/digit", "/predict/sequence", "/predict/digit-sum"):
        responses = spec["paths"][path]["post"]["responses"]
        assert {"200", "413", "415", "422", "503"} <= set(responses)


def test_unknown_errors_are_a_generic_500(mnist_test, monkeypatch, caplog):
    def explode(*_args, **_kwargs):
        raise RuntimeError("secret internals")

    app = create_app(Settings(device="cpu"))
    with caplog.at_level(logging.ERROR, logger="app.errors"), TestClient(app, raise_server_exceptions=False) as fresh:
        monkeypatch.setattr(DigitHandler, "predict", explode)  # the model fails mid-service
        response = fresh.post("/predict/digit", files=[png_part("files", digit_image(mnist_test.images[0]))])
    assert response.status_code == 500
    assert response.json() == {"code": "internal_error", "detail": "internal server error"}
    assert "secret" not in response.text
    assert any("unhandled error on POST /predict/digit" in r.getMessage() for r in caplog.records)


class _Exploit:
    """Runs code when unpickled without weights_only: touches a marker file."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (type(self.marker).touch, (self.marker,))


@pytest.mark.parametrize("fault", ["missing", "truncated", "tampered", "pickle with code"])
def test_refuses_to_start_on_a_bad_checkpoint(tmp_path, caplog, fault):
    weights = tmp_path / "weights"
    shutil.copytree(WEIGHTS, weights)
    target = weights / "sequence.pt"
    if fault == "missing":
        target.unlink()
    elif fault == "truncated":
        target.write_bytes(target.read_bytes()[:4096])
    elif fault == "pickle with code":
        # Whoever can replace the file can fix its checksum too: only weights_only stands between.
        target.write_bytes(pickle.dumps({"format": "digitserve-checkpoint/1", "state_dict": _Exploit(tmp_path / "pwned")}))
        lines = (weights / "SHA256SUMS").read_text().splitlines()
        fixed = [f"{sha256_file(target)}  sequence.pt" if line.endswith(" sequence.pt") else line for line in lines]
        (weights / "SHA256SUMS").write_text("\n".join(fixed) + "\n")
    else:
        data = bytearray(target.read_bytes())
        data[-100] ^= 1
        target.write_bytes(bytes(data))
    app = create_app(Settings(weights_dir=weights, device="cpu"))
    with caplog.at_level(logging.CRITICAL, logger="app"), pytest.raises(CheckpointError):
        with TestClient(app):
            pass
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    expected = {"missing": "checkpoint not found", "pickle with code": "cannot load"}.get(fault, "checksum mismatch")
    assert line.startswith("refusing to start: ") and expected in line and "sequence.pt" in line
    assert not (tmp_path / "pwned").exists()


def test_refuses_checkpoints_trained_with_different_preprocessing(tmp_path, caplog):
    """The service preprocesses uploads with the checkpoints' own configuration, which must be one
    (the sequence endpoint feeds the same arrays to two models)."""
    weights = tmp_path / "weights"
    shutil.copytree(WEIGHTS, weights)
    odd = load_checkpoint(weights / "digit_sum.pt")
    save_checkpoint(odd.model, {**odd.metadata, "preprocess": {**odd.metadata["preprocess"], "box": 18}}, weights / "digit_sum.pt")
    app = create_app(Settings(weights_dir=weights, device="cpu"))
    with caplog.at_level(logging.CRITICAL, logger="app"), pytest.raises(CheckpointError):
        with TestClient(app):
            pass
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert line.startswith("refusing to start: the checkpoints were trained with different preprocessing")
