"""Send real MNIST test digits to every endpoint of a running service and check the answers.

    python -m scripts.smoke_requests http://127.0.0.1:8000

Used by scripts/docker-smoke.sh against the container; exits non-zero on the first wrong answer.
"""

from __future__ import annotations

import json
import struct
import sys

import httpx
import numpy as np

from training.data import FASHION_MNIST, load_split
from training.strips import digit_image, encode, make_strip


def check(condition: bool, message: str) -> None:
    print(("ok   " if condition else "FAIL ") + message)
    if not condition:
        sys.exit(1)


def main(base: str) -> int:
    test = load_split("test")  # $MNIST_DATA_DIR
    seven, two = test.images[0], test.images[1]  # labels 7 and 2
    with httpx.Client(base_url=base, timeout=30) as client:
        body = client.get("/healthz").json()
        check(body == {"status": "ok"}, f"/healthz -> {body}")
        models = client.get("/models").json()["models"]
        check([m["name"] for m in models] == ["digit", "sequence", "digit_sum", "fashion", "line_reader"], f"/models lists {[m['id'] for m in models]}")

        files = [("files", ("seven.png", encode(digit_image(seven, size=96, black_on_white=True)), "image/png")),
                 ("files", ("two.jpg", encode(digit_image(two, mode="RGB"), "JPEG", quality=95), "image/jpeg"))]
        body = client.post("/predict/digit", files=files).json()
        check([p["label"] for p in body["predictions"]] == [7, 2], f"/predict/digit -> {[p['label'] for p in body['predictions']]}")

        strip = make_strip(test.images[:5], test.labels[:5], np.random.default_rng(0), height=80)
        body = client.post("/predict/sequence", files=[("strip", ("strip.png", encode(strip.image), "image/png"))]).json()
        read = [d["label"] for d in body["digits"]]
        check(read == strip.labels and body["contains_4"] is True, f"/predict/sequence -> {read}, contains_4={body['contains_4']}")

        body = client.post("/predict/digit-sum", files=[("file", ("seven.png", encode(digit_image(seven)), "image/png"))],
                           data={"number": "35"}).json()
        check(body["digit"] == 7 and body["sum"] == 42, f"/predict/digit-sum 7 + 35 -> {body['sum']}")

        garments = load_split("test", None, FASHION_MNIST).images  # Debian's dataset-fashion-mnist
        files = [("files", ("boot.jpg", encode(digit_image(garments[0], size=140, black_on_white=True, mode="RGB"), "JPEG"), "image/jpeg")),
                 ("files", ("trouser.png", encode(digit_image(garments[2])), "image/png"))]
        body = client.post("/predict/fashion", files=files).json()
        read = [p["label"] for p in body["predictions"]]
        check(read == ["Ankle boot", "Trouser"], f"/predict/fashion -> {read}")

        response = client.post("/predict/digit", files=[("files", ("x.txt", b"not an image", "text/plain"))])
        check(response.status_code == 415 and response.json()["code"] == "unsupported_media_type", f"bad upload -> {response.status_code}")
        check("http_requests_total" in client.get("/metrics").text, "/metrics")
        check("swagger-ui" in client.get("/docs").text, "/docs")
        page = client.get("/")
        check(page.status_code == 200 and "Draw a digit" in page.text and client.get("/static/page.js").status_code == 200,
              "/ (the page and its script)")

        image = encode(digit_image(seven))
        head = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                       "parameters": {"binary_data_size": 4 + len(image)}}]}).encode()
        response = client.post("/v2/models/digit/infer", content=head + struct.pack("<I", len(image)) + image,
                               headers={"Inference-Header-Content-Length": str(len(head))})
        label = response.json()["outputs"][0]["data"] if response.status_code == 200 else None
        check(label == [7], f"/v2/models/digit/infer (binary BYTES input) -> {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
