"""The shared preprocessing on real MNIST test digits (strips: tests/model/test_line.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from model.checkpoint import Checkpoint
from model.preprocess import NoInkError, normalise, preprocess_digit, preprocess_digits, to_gray, to_inks
from training.strips import digit_image, encode


def _predict(checkpoint: Checkpoint, arrays: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return checkpoint.model(normalise(arrays)).argmax(1).numpy()


def test_mnist_digit_keeps_the_mnist_normalisation(mnist_test):
    for raw in mnist_test.images[:50]:
        out = preprocess_digit(digit_image(raw))
        assert out.shape == (28, 28) and out.dtype == np.float32
        assert out.min() == 0.0 and out.max() == pytest.approx(1.0)
        rows = np.flatnonzero(out.max(axis=1) > 0)
        cols = np.flatnonzero(out.max(axis=0) > 0)
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 in (20, 21)  # longer side fits the 20-pixel box
        ys, xs = np.indices(out.shape)
        com = ((ys * out).sum() / out.sum(), (xs * out).sum() / out.sum())
        assert abs(com[0] - 13.5) <= 1.0 and abs(com[1] - 13.5) <= 1.0


def test_polarity_is_detected(mnist_test):
    for raw in mnist_test.images[:50]:
        white_on_black = preprocess_digit(digit_image(raw))
        black_on_white = preprocess_digit(digit_image(raw, black_on_white=True))
        np.testing.assert_allclose(black_on_white, white_on_black, atol=1e-5)


def test_transparent_png_of_black_ink_reads_as_ink_on_paper(mnist_test):
    raw = mnist_test.images[0]
    rgba = np.zeros((28, 28, 4), dtype=np.uint8)
    rgba[..., 3] = raw  # black ink whose opacity is the stroke, on a fully transparent background
    decoded = Image.open(io.BytesIO(encode(Image.fromarray(rgba, mode="RGBA"))))
    np.testing.assert_allclose(preprocess_digit(decoded), preprocess_digit(digit_image(raw)), atol=1e-2)


def test_transparent_background_behind_white_ink(mnist_test):
    """White strokes on a transparent background (a palette PNG whose black is transparent):
    flattened onto white the ink would vanish; it must read as the original digit."""
    raw = mnist_test.images[0]
    palette = digit_image(raw).convert("P")
    palette.info["transparency"] = 0  # palette index of the black background
    decoded = Image.open(io.BytesIO(encode(palette)))
    assert decoded.mode == "P" and "transparency" in decoded.info
    np.testing.assert_allclose(preprocess_digit(decoded), preprocess_digit(digit_image(raw)), atol=2e-2)


def test_sixteen_bit_images_are_scaled_not_clipped(mnist_test):
    raw = mnist_test.images[0]
    sixteen = Image.fromarray(raw.astype(np.uint16) * 257)  # mode I;16
    assert sixteen.mode == "I;16"
    np.testing.assert_allclose(to_gray(sixteen), raw / 255.0, atol=1e-6)


def test_rescaled_uploads_read_like_the_originals(mnist_test, digit_checkpoint):
    """Large, padded, inverted, JPEG-compressed uploads classify as the MNIST originals do."""
    raws = mnist_test.images[:300]
    originals = np.stack([preprocess_digit(digit_image(r)) for r in raws])
    uploads = []
    for i, raw in enumerate(raws):
        image = digit_image(raw, size=[56, 120, 300][i % 3], black_on_white=i % 2 == 0, pad=[0, 9, 40][i % 3], mode="RGB")
        uploads.append(preprocess_digit(Image.open(io.BytesIO(encode(image, "JPEG", quality=90)))))
    agree = (_predict(digit_checkpoint, np.stack(uploads)) == _predict(digit_checkpoint, originals)).mean()
    assert agree >= 0.99


def test_a_batch_preprocesses_as_each_image_alone(mnist_test):
    """The batch path (uploads of a request, a training split) groups same-sized images; every
    array must be what ``preprocess_digit`` gives that image alone (to float rounding: a batch
    is resized by matrix products, one image by Pillow)."""
    images: list[Image.Image | np.ndarray] = []
    for i, raw in enumerate(mnist_test.images[:120]):
        if i % 4 == 0:
            images.append(raw.astype(np.float32) / 255.0)  # as training reads the IDX files
        else:
            images.append(digit_image(raw, size=[28, 28, 90][i % 3], black_on_white=i % 2 == 1, mode=["L", "RGB"][i % 2]))
    batch = preprocess_digits(images)
    alone = np.stack([preprocess_digit(image) for image in images])
    assert batch.dtype == np.float32 and batch.shape == (120, 28, 28)
    np.testing.assert_allclose(batch, alone, rtol=0, atol=1e-6)


def test_a_batch_names_its_first_blank_image(mnist_test):
    images = [digit_image(raw) for raw in mnist_test.images[:4]]
    images[2] = Image.new("L", (28, 28), 255)
    images.insert(1, Image.new("L", (50, 40), 0))  # another size, earlier in the batch
    with pytest.raises(NoInkError, match="^the image is blank: no ink stands out from the background$") as caught:
        preprocess_digits(images)
    assert caught.value.index == 1
    del images[1]
    with pytest.raises(NoInkError) as caught:
        preprocess_digits(images)
    assert caught.value.index == 2


@pytest.mark.parametrize("value", [0, 128, 255])
def test_blank_images_hold_no_digit(value):
    with pytest.raises(NoInkError):
        preprocess_digit(Image.new("L", (64, 64), value))


def test_fashion_config_frames_a_garment_as_fashion_mnist_did(fashion_test):
    """Fashion-MNIST scaled each product so its longer side spans the canvas and centred its box:
    a test image comes back with the same frame, and a product photo of it (dark on white paper,
    5x larger, off-centre) comes back in that frame too, the same picture up to the blur of
    scaling it up and back down."""
    from model.preprocess import FASHION_CONFIG

    def frame(array: np.ndarray) -> tuple[int, int, int, int]:
        rows, cols = np.flatnonzero(array.max(1) > 0), np.flatnonzero(array.max(0) > 0)
        return rows[0], rows[-1], cols[0], cols[-1]

    originals, photos = [], []
    for raw in fashion_test.images[:50]:
        array = preprocess_digit(raw.astype(np.float32) / 255, FASHION_CONFIG)
        top, bottom, left, right = frame(array)
        assert max(bottom - top, right - left) + 1 == 28
        assert abs(top + bottom - 27) <= 1 and abs(left + right - 27) <= 1
        photo = Image.new("L", (220, 180), 255)
        photo.paste(digit_image(raw, size=140, black_on_white=True), (60, 12))
        again = preprocess_digit(photo, FASHION_CONFIG)
        assert np.abs(np.subtract(frame(again), frame(array))).max() <= 1
        originals.append(array)
        photos.append(again)
    # Each photo's array is nearer its own original than any of the 49 other garments'.
    distances = np.abs(np.array(photos)[:, None] - np.array(originals)[None]).mean(axis=(2, 3))
    assert distances.argmin(axis=1).tolist() == list(range(50))


def test_digits_keep_centre_of_mass_framing(mnist_test):
    """The digit config is unchanged by the garment option: a 20-pixel box, centred by mass."""
    array = preprocess_digit(mnist_test.images[0].astype(np.float32) / 255)
    rows, cols = np.flatnonzero(array.max(1) > 0), np.flatnonzero(array.max(0) > 0)
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 == 20
    ys, xs = np.indices(array.shape)
    assert abs((ys * array).sum() / array.sum() - 13.5) <= 0.5 and abs((xs * array).sum() / array.sum() - 13.5) <= 0.5


def _ink_box(array: np.ndarray) -> tuple[slice, slice]:
    rows, cols = np.flatnonzero(array.any(axis=1)), np.flatnonzero(array.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def test_a_batch_is_resized_as_each_image_alone(mnist_test, fashion_test):
    """A batch is resized with matrix products, a lone image with Pillow's BILINEAR resize; every
    array must come out the same: MNIST and Fashion-MNIST test images (shrunk and grown, both
    framings), and random sparse inks of 1-200 pixels a side, where an exact tie in the centre of
    mass may round the other way (one pixel)."""
    from model.preprocess import DEFAULT_CONFIG, FASHION_CONFIG, ink_to_array, inks_to_arrays

    for config, split in ((DEFAULT_CONFIG, mnist_test), (FASHION_CONFIG, fashion_test)):
        grays = split.images[:300].astype(np.float32) / 255
        for scaled in (grays, np.kron(grays, np.ones((1, 3, 3), np.float32))):  # 28 and 84 pixels
            inks = to_inks(scaled, config)[0]
            alone = np.stack([ink_to_array(ink, config) for ink in inks])
            np.testing.assert_allclose(inks_to_arrays(inks, config), alone, atol=1e-5)
    rng = np.random.default_rng(0)
    for _ in range(10):
        height, width = rng.integers(3, 200, size=2)
        inks = np.zeros((20, height, width), np.float32)
        for ink in inks:
            h, w = rng.integers(1, height + 1), rng.integers(1, width + 1)
            top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
            ink[top : top + h, left : left + w] = rng.random((h, w)) * (rng.random((h, w)) > 0.3)
            ink[top, left] = ink[top + h - 1, left + w - 1] = 1.0
        for batched, ink in zip(inks_to_arrays(inks), inks, strict=True):
            alone = ink_to_array(ink)
            here, there = _ink_box(batched), _ink_box(alone)
            np.testing.assert_allclose(batched[here], alone[there], atol=1e-5)
            assert all(abs(a.start - b.start) <= 1 for a, b in zip(here, there, strict=True))
