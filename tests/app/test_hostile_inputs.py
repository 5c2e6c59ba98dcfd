"""Hostile uploads: each gets a precise 4xx (or, where the file is a fine image after all, the
right reading), and the service answers normally afterwards. Never a 500."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.app.conftest import correct_indices
from training.strips import digit_image, encode

UNSUPPORTED = "is not an image in a supported format (PNG, JPEG, BMP, GIF, WEBP, TIFF)"


def _bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of width x height white pixels that compresses to about 100 kB."""
    rows = b"".join(b"\x00" + b"\x00" * ((width + 7) // 8) for _ in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def seven(mnist_test, digit_checkpoint) -> tuple[np.ndarray, int]:
    index = correct_indices(mnist_test, digit_checkpoint, 1)[0]
    return mnist_test.images[index], int(mnist_test.labels[index])


def _refusals(raw: np.ndarray) -> dict[str, tuple[bytes, int, str, str]]:
    png = encode(digit_image(raw, size=64))
    return {
        "zero bytes": (b"", 422, "empty_file", "is empty"),
        "truncated PNG": (png[: len(png) // 2], 422, "corrupt_image", "could not be decoded: image file is truncated"),
        "truncated JPEG": (encode(digit_image(raw, mode="RGB"), "JPEG")[:300], 415, "unsupported_media_type", UNSUPPORTED),
        "PNG header, then garbage": (png[:16] + b"garbage" * 50, 415, "unsupported_media_type", UNSUPPORTED),
        "decompression bomb": (_bomb_png(30_000, 30_000), 413, "image_too_large", "has too many pixels (decompression bomb)"),
        "SVG named .png": (b'<svg xmlns="http://www.w3.org/2000/svg"><text>7</text></svg>', 415, "unsupported_media_type", UNSUPPORTED),
        "PDF named .png": (b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", 415, "unsupported_media_type", UNSUPPORTED),
        "1 x 100,000 blank strip": (encode(Image.new("L", (100_000, 1), 255)), 422, "no_digit_found",
                                    ": the image is blank: no ink stands out from the background"),
        "all white": (encode(Image.new("L", (50, 50), 255)), 422, "no_digit_found", ": the image is blank: no ink stands out from the background"),
        "all black": (encode(Image.new("L", (50, 50), 0)), 422, "no_digit_found", ": the image is blank: no ink stands out from the background"),
    }


@pytest.mark.parametrize("endpoint,field", [("/predict/digit", "files"), ("/predict/sequence", "strip")])
def test_refused_with_a_precise_error(client, seven, endpoint, field):
    raw, label = seven
    for case, (data, status, code, message) in _refusals(raw).items():
        response = client.post(endpoint, files=[(field, ("upload.png", data, "image/png"))])
        assert response.status_code == status, case
        body = response.json()
        assert body["code"] == code, case
        assert body["detail"].startswith(f"{field} 'upload.png'") and body["detail"].endswith(message), (case, body)
    response = client.post("/predict/digit", files=[("files", ("ok.png", encode(digit_image(raw)), "image/png"))])
    assert response.status_code == 200 and response.json()["predictions"][0]["label"] == label


def test_odd_but_valid_images_are_read(client, seven):
    raw, label = seven
    palette = digit_image(raw).convert("P")
    palette.info["transparency"] = 0  # the black background is transparent, the ink white
    gif = io.BytesIO()
    frames = [digit_image(raw, size=64)] + [Image.new("L", (64, 64), 0)] * 2  # later frames are blank
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    uploads = {
        "16-bit PNG": encode(Image.fromarray(raw.astype(np.uint16) * 257)),
        "palette PNG with transparency": encode(palette),
        "CMYK JPEG": encode(digit_image(raw, size=64).convert("CMYK"), "JPEG", quality=95),
        "animated GIF (first frame)": gif.getvalue(),
    }
    for case, data in uploads.items():
        response = client.post("/predict/digit", files=[("files", ("odd", data, "application/octet-stream"))])
        assert response.status_code == 200, case
        assert response.json()["predictions"][0]["label"] == label, case


def test_ten_thousand_tiny_files_are_refused_before_decoding(client, seven):
    tiny = encode(Image.new("L", (1, 1), 0))
    response = client.post("/predict/digit", files=[("files", ("t.png", tiny, "image/png"))] * 10_000)
    assert response.status_code == 400
    assert response.json() == {"code": "bad_request", "detail": "Too many files. Maximum number of files is 1000."}


def test_a_five_megabyte_number_is_refused(client, seven):
    raw, _ = seven
    response = client.post("/predict/digit-sum", files=[("file", ("a.png", encode(digit_image(raw)), "image/png"))],
                           data={"number": "9" * 5_000_000})
    assert response.status_code == 400
    assert response.json() == {"code": "bad_request", "detail": "Part exceeded maximum size of 1024KB."}
