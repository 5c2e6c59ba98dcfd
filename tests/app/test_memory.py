"""Memory as a budget: pixels are counted from the headers before decoding, large images are
decoded reduced, and a request past its deadline stops decoding before it reaches a model."""

from __future__ import annotations

import io
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from app.engine import PixelBudget
from app.errors import HEADERS, status_of
from app.failures import RequestFailed
from app.handlers.uploads import MAX_SIDE, decode_image, open_image
from bench.processes import running_service
from tests.app.conftest import make_client, png_part
from training.strips import digit_image, encode


def _white_png(width: int, height: int) -> bytes:
    """A mostly white image that compresses to a few kilobytes: many pixels for few bytes."""
    image = Image.new("L", (width, height), 255)
    image.paste(Image.new("L", (40, 40), 0), (width // 2, height // 2))
    return encode(image)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_request_declaring_too_many_pixels_is_refused_before_decoding():
    """256 copies of a 40-megapixel PNG of a few kilobytes each: each image is under
    MAX_IMAGE_PIXELS and the body under MAX_BODY_BYTES, but the request declares 10 billion
    pixels. It gets 413 at once, and the worker's memory barely moves (decoding them all took it
    from 0.55 to 3.4 GB before the budget)."""
    big = _white_png(8000, 5000)
    assert len(big) < 80_000
    files = [("files", (f"{i}.png", big, "image/png")) for i in range(256)]
    with running_service() as service:
        url = service.url
        before = _rss_mb(service.process.pid)
        response = httpx.post(url + "/predict/digit", files=files, timeout=60)
        after = _rss_mb(service.process.pid)
        assert response.status_code == 413
        assert response.json()["code"] == "image_too_large"
        assert "limit is 50,000,000 per request" in response.json()["detail"]
        assert after - before < 100, (before, after)
        assert httpx.get(url + "/readyz").status_code == 200


def test_small_requests_have_headroom_when_huge_ones_fill_the_budget():
    budget = PixelBudget(per_request=100, limit=150, small=10)  # headroom: max(10, 5% of 150) = 10
    with budget.hold(100), budget.hold(50):  # huge uploads fill the budget
        with pytest.raises(RequestFailed):
            with budget.hold(11):  # not small: turned away
                pass
        with budget.hold(10):  # small: served from the headroom
            with pytest.raises(RequestFailed):
                with budget.hold(1):  # the headroom is bounded too
                    pass
    assert budget.in_flight == 0


def test_the_in_flight_budget_turns_requests_away_at_once_and_gives_pixels_back():
    budget = PixelBudget(per_request=100, limit=150, small=0)
    with budget.hold(100):
        with pytest.raises(RequestFailed) as refused:
            with budget.hold(60):
                pass
        assert status_of(refused.value.code) == 503 and refused.value.code == "overloaded"
        assert HEADERS[refused.value.code] == {"Retry-After": "1"}
        with budget.hold(50):
            assert budget.in_flight == 150
    assert budget.in_flight == 0
    with pytest.raises(RequestFailed) as too_large:
        with budget.hold(101):
            pass
    assert status_of(too_large.value.code) == 413 and too_large.value.code == "image_too_large"
    with budget.hold(100):  # one request alone may always use the whole per-request budget
        pass


def test_the_request_budget_is_a_setting(mnist_test):
    files = [png_part("files", digit_image(mnist_test.images[i], size=100)) for i in range(3)]
    with make_client(max_request_pixels=25_000) as client:
        assert client.post("/predict/digit", files=files[:2]).status_code == 200  # 20,000 pixels
        response = client.post("/predict/digit", files=files)  # 30,000
        assert response.status_code == 413 and response.json()["code"] == "image_too_large"


@pytest.mark.parametrize(("fmt", "mode"), [("JPEG", "RGB"), ("PNG", "L"), ("PNG", "P"), ("TIFF", "I;16")])
def test_large_images_are_decoded_reduced(fmt, mode):
    """A 6000 x 800 image is decoded at most 1,024 pixels long for a digit and 4,096 for a strip,
    its aspect kept, whatever its format and mode (16-bit values kept, not clipped)."""
    if mode == "I;16":
        image = Image.fromarray(np.full((800, 6000), 60000, dtype=np.uint16))
    else:
        image = Image.new("L", (6000, 800), 255).convert(mode)
    data = encode(image, fmt)
    decoded = decode_image(open_image(data, "x", 40_000_000), "x")
    assert max(decoded.size) <= MAX_SIDE["digit"] and decoded.size[0] / decoded.size[1] == pytest.approx(7.5, rel=0.02)
    if mode == "I;16":
        assert np.asarray(decoded).max() == 60000
    strip = decode_image(open_image(data, "x", 40_000_000), "x", MAX_SIDE["strip"])
    assert MAX_SIDE["strip"] // 2 < max(strip.size) <= MAX_SIDE["strip"]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_reduced_photo_keeps_its_exif_orientation(mnist_test, fmt):
    """A photo stored sideways with an EXIF orientation is upright after reduction too (a JPEG
    reduced by its decoder, a PNG by box averaging)."""
    upright = digit_image(mnist_test.images[0], size=3000, black_on_white=True)
    sideways = upright.transpose(Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 degrees clockwise to view
    buffer = io.BytesIO()
    sideways.convert("RGB").save(buffer, format=fmt, exif=exif.tobytes())
    decoded = decode_image(open_image(buffer.getvalue(), "photo", 40_000_000), "photo")
    assert max(decoded.size) <= MAX_SIDE["digit"]
    small = np.asarray(upright.resize(decoded.size), dtype=np.float32)
    assert np.abs(np.asarray(decoded.convert("L"), dtype=np.float32) - small).mean() < 12


def test_a_request_past_its_deadline_stops_decoding_and_never_reaches_the_model(mnist_test):
    """64 images of 4 megapixels take longer to decode than a 0.3 s deadline: the request gets
    503 deadline_exceeded, and the digit model ran no pass for it."""
    files = [("files", (f"{i}.png", _white_png(2000, 2000), "image/png")) for i in range(64)]
    with make_client(request_timeout_seconds=0.3, max_request_pixels=10**9, max_inflight_pixels=10**9) as client:
        response = client.post("/predict/digit", files=files)
        assert response.status_code == 503 and response.json()["code"] == "deadline_exceeded"
        metrics = client.get("/metrics").text
        passes = re.search(r'^inference_batch_size_count\{model="digit"\} (\S+)$', metrics, re.MULTILINE)
        assert passes is None or float(passes.group(1)) == 0
        ok = client.post("/predict/digit", files=[png_part("files", digit_image(mnist_test.images[0]))])
        assert ok.status_code == 200


def test_a_request_whose_client_leaves_stops_decoding_and_never_reaches_the_model():
    """64 four-megapixel images (over a second of decoding), and the client closes the
    connection as soon as the body is sent: decoding stops, no forward pass runs for it, and
    the service answers the next request."""
    import socket
    import time
    from urllib.parse import urlparse

    boundary = b"b0undary"
    image = _white_png(2000, 2000)
    parts = b"".join(b"--" + boundary + b'\r\nContent-Disposition: form-data; name="files"; filename="x.png"\r\n'
                     b"Content-Type: image/png\r\n\r\n" + image + b"\r\n" for _ in range(64))
    body = parts + b"--" + boundary + b"--\r\n"
    with running_service(MAX_REQUEST_PIXELS=str(10**9), MAX_INFLIGHT_PIXELS=str(10**9)) as service:
        address = urlparse(service.url)
        client = socket.create_connection((address.hostname, address.port))
        client.sendall(b"POST /predict/digit HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=" + boundary
                       + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        time.sleep(0.3)
        client.close()
        time.sleep(3)  # longer than decoding all 64 would take
        metrics = httpx.get(service.url + "/metrics").text
        passes = re.search(r'^inference_batch_size_count\{model="digit"\} (\S+)$', metrics, re.MULTILINE)
        assert passes is None or float(passes.group(1)) == 0
        assert '"status": 499' in service.read_until('"path": "/predict/digit"')
        ok = httpx.post(service.url + "/predict/digit", files={"files": ("d.png", _white_png(28, 28), "image/png")})
        assert ok.status_code in (200, 422)
