"""The shared preprocessing on real MNIST test digits and on strips built from them."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from model.checkpoint import Checkpoint
from model.components import label_components
from model.preprocess import (
    GLYPH_HEIGHT,
    GLYPH_WIDTH,
    NoInkError,
    StripGlyph,
    glyph_to_array,
    normalise,
    preprocess_digit,
    preprocess_digits,
    preprocess_strip,
    to_gray,
)
from tests.imaging import digit_image, encode, make_strip


def _predict(checkpoint: Checkpoint, arrays: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return checkpoint.model(normalise(arrays)).argmax(1).numpy()


def _judge(checkpoint: Checkpoint):
    def confidence(arrays: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return checkpoint.model(normalise(arrays)).softmax(1).amax(1).numpy()

    return confidence


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


def test_a_batch_preprocesses_exactly_as_each_image_alone(mnist_test):
    """The batch path (uploads of a request, a training split) groups same-sized images; every
    array must be bit for bit what ``preprocess_digit`` gives that image alone."""
    images: list[Image.Image | np.ndarray] = []
    for i, raw in enumerate(mnist_test.images[:120]):
        if i % 4 == 0:
            images.append(raw.astype(np.float32) / 255.0)  # as training reads the IDX files
        else:
            images.append(digit_image(raw, size=[28, 28, 90][i % 3], black_on_white=i % 2 == 1, mode=["L", "RGB"][i % 2]))
    batch = preprocess_digits(images)
    alone = np.stack([preprocess_digit(image) for image in images])
    assert batch.dtype == np.float32 and batch.shape == (120, 28, 28)
    assert np.array_equal(batch, alone)


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
    with pytest.raises(NoInkError):
        preprocess_strip(Image.new("L", (300, 64), value))


def test_strip_of_unevenly_spaced_digits_is_split_and_read(mnist_test, digit_checkpoint):
    """Strips of 3-12 test digits, black on white, 40-140 px tall, gaps of 0 to 1/3 of a digit's
    width: the right number of digits comes out, in order, and they read as the labels (the
    digit model judging whether wide glyphs are touching digits)."""
    rng = np.random.default_rng(7)
    counted, read = 0, 0
    trials = 60
    judge = _judge(digit_checkpoint)
    for _ in range(trials):
        count = int(rng.integers(3, 13))
        index = rng.integers(0, len(mnist_test), count)
        strip = make_strip(mnist_test.images[index], mnist_test.labels[index], rng)
        arrays = preprocess_strip(strip.image, judge)
        if len(arrays) == count:
            counted += 1
            read += int((_predict(digit_checkpoint, arrays) == np.array(strip.labels)).all())
    assert counted >= 0.95 * trials
    assert read >= 0.9 * trials


def test_strip_in_mnist_polarity_with_wide_gaps(mnist_test, digit_checkpoint):
    rng = np.random.default_rng(11)
    strip = make_strip(mnist_test.images[:8], mnist_test.labels[:8], rng, height=60, max_gap=2.0, black_on_white=False)
    arrays = preprocess_strip(strip.image, _judge(digit_checkpoint))
    assert _predict(digit_checkpoint, arrays).tolist() == strip.labels == [7, 2, 1, 0, 4, 1, 4, 9]


def test_touching_digits_are_cut_apart(mnist_test, digit_checkpoint):
    """Two digits whose ink touches form one component; the judge reads them as two."""
    zero, seven = mnist_test.images[3][:, 4:23], mnist_test.images[0][:, 6:24]  # a 0 and a 7
    pair = np.zeros((28, 35), dtype=np.uint8)
    pair[:, :19] = zero
    pair[:, 17:] = np.maximum(pair[:, 17:], seven)  # two columns of overlap: the strokes meet
    assert label_components(pair > 64)[1] == 1
    arrays = preprocess_strip(pair.astype(np.float32) / 255, _judge(digit_checkpoint))
    assert _predict(digit_checkpoint, arrays).tolist() == [0, 7]


@pytest.mark.parametrize(("index", "what"), [(1940, "a 5 whose top bar is detached and reaches over to the 1"),
                                             (6592, "a 9 drawn in broken, partly faint strokes"),
                                             (6558, "a 6 drawn in broken, partly faint strokes")])
def test_a_digits_loose_pieces_stay_with_it(mnist_test, digit_checkpoint, index, what):
    """Between a 0 and a 1, touching both: the digit's detached pieces and faint strokes are read
    with it, not dropped or handed to a neighbour (which misread every one of these strips when
    pieces went to the nearest neighbour and faint ink was cut away)."""
    digits = np.array([3, index, 2])
    assert mnist_test.labels[digits].tolist() == [0, int(mnist_test.labels[index]), 1], what
    for seed in range(6):
        strip = make_strip(mnist_test.images[digits], mnist_test.labels[digits], np.random.default_rng(seed), height=100)
        assert _predict(digit_checkpoint, preprocess_strip(strip.image, _judge(digit_checkpoint))).tolist() == strip.labels


def _counter(checkpoint: Checkpoint):
    def counts(glyphs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return checkpoint.model(torch.from_numpy(glyphs).unsqueeze(1)).softmax(1).numpy()

    return counts


@pytest.mark.parametrize(("seed", "digits", "judged_alone"), [(109, [5553, 5437, 3301], [7, 2]),
                                                              (152, [6855, 2185, 3629], [7, 8]),
                                                              (182, [7853, 1659, 442], [8, 3])])
def test_the_glyph_counter_cuts_apart_touching_digits_the_judge_reads_as_one(mnist_test, digit_checkpoint,
                                                                            segmenter_checkpoint, seed, digits, judged_alone):
    """Test digits written with no gap, so that two of them touch: the digit classifier alone is
    surer of the merged glyph than of its halves and drops a digit; with the glyph counter, the
    strip reads right."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(mnist_test), 3)
    assert index.tolist() == digits
    strip = make_strip(mnist_test.images[index], mnist_test.labels[index], rng, height=80, max_gap=0.0)
    judge = _judge(digit_checkpoint)
    assert _predict(digit_checkpoint, preprocess_strip(strip.image, judge)).tolist() == judged_alone
    counted = preprocess_strip(strip.image, judge, counter=_counter(segmenter_checkpoint))
    assert _predict(digit_checkpoint, counted).tolist() == strip.labels


@pytest.mark.parametrize(("seed", "digits", "thinnest_column"), [(131, [4655, 6464, 3064], [8, 7, 8]),
                                                                 (201, [2995, 9907, 1339], [6, 2, 5]),
                                                                 (288, [2256, 7333, 3966], [1, 0, 9])])
def test_two_touching_digits_are_cut_where_both_read_best(mnist_test, digit_checkpoint, segmenter_checkpoint, monkeypatch,
                                                         seed, digits, thinnest_column):
    """The thinnest column of a touching pair is often inside a digit (where a loop narrows): cut
    there, both halves misread. Cuts across the pair's middle are tried and the judge picks."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(mnist_test), 3)
    assert index.tolist() == digits
    strip = make_strip(mnist_test.images[index], mnist_test.labels[index], rng, height=80, max_gap=0.0)
    judge, counter = _judge(digit_checkpoint), _counter(segmenter_checkpoint)
    assert _predict(digit_checkpoint, preprocess_strip(strip.image, judge, counter=counter)).tolist() == strip.labels
    monkeypatch.setattr("model.preprocess._pair_cuts", lambda own: [])  # the thinnest column only
    assert _predict(digit_checkpoint, preprocess_strip(strip.image, judge, counter=counter)).tolist() == thinnest_column


def _without_the_counters_say_on_fragments(monkeypatch):
    from model import preprocess

    attach = preprocess._attach_fragments
    monkeypatch.setattr(preprocess, "_attach_fragments", lambda *args: attach(*args[:6]))


@pytest.mark.parametrize(("digits", "height", "seed", "undo", "undone"), [
    # the 1 leaves a thin sliver of stroke beside it, tall enough to pass for a digit
    ([8020, 4321, 7526, 8550], 123, 0, lambda mp: mp.setattr("model.preprocess._SLIVER_MASS", 0.0), [1, 1, 9, 0, 2]),
    # the 6's loop is parted from its stem and lies between it and the 8; joined to the 8 it
    # reads as a surer 8 than the 6 it came from, but the counter then sees two digits in it
    ([4026, 4873, 5142, 9679], 40, 2, _without_the_counters_say_on_fragments, [3, 3, 8, 1, 1]),
    # the third 4's bar and stem are two glyphs side by side, each as tall as a digit
    ([1963, 5597, 9639, 999], 47, 0, lambda mp: mp.setattr("model.preprocess._JOINED_WIDTH", 0.0), [4, 4, 6, 1, 9]),
])
def test_a_digit_broken_in_pieces_is_read_as_one(mnist_test, digit_checkpoint, segmenter_checkpoint, monkeypatch,
                                                digits, height, seed, undo, undone):
    """Strips of test digits where one digit's ink is broken into pieces that segmentation once
    read as an extra digit: each is read right, and misread again with the one rule that keeps
    the pieces together undone."""
    index = np.array(digits)
    strip = make_strip(mnist_test.images[index], mnist_test.labels[index], np.random.default_rng(seed), height=height)
    judge, counter = _judge(digit_checkpoint), _counter(segmenter_checkpoint)
    assert _predict(digit_checkpoint, preprocess_strip(strip.image, judge, counter=counter)).tolist() == strip.labels
    undo(monkeypatch)
    assert _predict(digit_checkpoint, preprocess_strip(strip.image, judge, counter=counter)).tolist() == undone


def test_the_glyph_counter_alone_decides_without_a_judge(mnist_test, segmenter_checkpoint):
    rng = np.random.default_rng(109)
    index = rng.integers(0, len(mnist_test), 3)
    strip = make_strip(mnist_test.images[index], mnist_test.labels[index], rng, height=80, max_gap=0.0)
    assert len(preprocess_strip(strip.image)) == 2  # width alone: the touching pair is one digit
    assert len(preprocess_strip(strip.image, counter=_counter(segmenter_checkpoint))) == 3


def _drawn(array: np.ndarray) -> tuple[int, int, int, int]:
    """Rows and columns of a drawn glyph: its height, width, top and left."""
    rows, cols = np.flatnonzero(array.any(axis=1)), np.flatnonzero(array.any(axis=0))
    return len(rows), len(cols), int(rows[0]), int(cols[0])


def test_a_glyph_is_drawn_for_the_counter_at_its_rows_scale():
    """The row's digit height becomes 20 pixels whatever the glyph's own size, so width keeps its
    meaning; a glyph too wide for the canvas is shrunk to fit; it is centred, peak 1."""
    block = np.full((50, 35), 0.6, dtype=np.float32)
    array = glyph_to_array(StripGlyph(block, 0, 34, row_height=50.0))
    assert array.shape == (GLYPH_HEIGHT, GLYPH_WIDTH) and array.dtype == np.float32
    assert _drawn(array) == (20, 14, 6, 41) and array.max() == 1.0
    assert _drawn(glyph_to_array(StripGlyph(block, 0, 34, row_height=100.0)))[:2] == (10, 7)  # half the row's height
    wide = np.ones((50, 400), dtype=np.float32)
    assert _drawn(glyph_to_array(StripGlyph(wide, 0, 399, row_height=50.0)))[:2] == (12, 96)
    assert StripGlyph(wide, 0, 399, row_height=50.0).width_ratio == 8.0


def test_specks_are_not_digits(mnist_test):
    rng = np.random.default_rng(3)
    strip = make_strip(mnist_test.images[:4], mnist_test.labels[:4], rng, height=80)
    noisy = np.asarray(strip.image).copy()
    noisy[5:7, 5:7] = 0  # two-pixel dots of dirt on the paper
    noisy[-6:-4, noisy.shape[1] // 2 : noisy.shape[1] // 2 + 2] = 0
    assert len(preprocess_strip(Image.fromarray(noisy))) == 4


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
