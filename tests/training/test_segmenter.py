"""The glyph counter's training data: glyphs of rendered strips, labelled by the digits they hold."""

from __future__ import annotations

import numpy as np
import torch

from model.preprocess import find_glyphs, to_gray, to_ink
from tests.imaging import make_strip
from training.segmenter import digit_judge, digits_held, render_glyphs

CPU = torch.device("cpu")


def test_spaced_digits_each_make_a_glyph_holding_one(mnist_test, digit_checkpoint):
    strip = make_strip(mnist_test.images[:6], mnist_test.labels[:6], np.random.default_rng(0), height=70, max_gap=1.5)
    glyphs = find_glyphs(to_ink(to_gray(strip.image)), digit_judge(digit_checkpoint, CPU))
    assert [digits_held(glyph, strip.columns) for glyph in glyphs] == [1] * 6
    # A glyph's columns are its strokes': inside the digit's ink, at most its faint edge away.
    for glyph, (first, last) in zip(glyphs, strip.columns):
        assert first <= glyph.left <= first + 3 and last - 3 <= glyph.right <= last


def test_touching_digits_make_one_glyph_holding_both(mnist_test):
    zero, seven = mnist_test.images[3][:, 4:23], mnist_test.images[0][:, 6:24]  # a 0 and a 7
    pair = np.zeros((40, 60), dtype=np.uint8)
    pair[6:34, 10:29] = zero
    pair[6:34, 26:44] = np.maximum(pair[6:34, 26:44], seven)  # three columns of overlap: the strokes meet
    (glyph,) = find_glyphs(to_ink(pair.astype(np.float32) / 255))
    assert digits_held(glyph, [(10, 28), (26, 43)]) == 2
    assert digits_held(glyph, [(0, 8), (10, 28), (26, 43), (50, 58)]) == 2


def test_rendered_glyphs_are_drawn_and_labelled_for_the_counter(mnist_test, digit_checkpoint):
    judge = digit_judge(digit_checkpoint, CPU)
    glyphs = render_glyphs(mnist_test, np.arange(len(mnist_test)), 30, np.random.default_rng(1), judge, most=4)
    assert glyphs.arrays.shape[1:] == (1, 32, 96) and glyphs.arrays.dtype == torch.float16
    counts = torch.bincount(glyphs.classes, minlength=4)
    # 30 strips of 3-30 digits, a third of them with digits abutting: mostly single digits, some merges.
    assert counts[0] > 200 and counts[1:].sum() >= 1
    assert float(glyphs.arrays.amax()) == 1.0
    # Without one-digit glyphs, only merges remain, and the same strips give the same merges.
    merged = render_glyphs(mnist_test, np.arange(len(mnist_test)), 30, np.random.default_rng(1), judge, most=4, singles_kept=0.0)
    assert merged.classes.tolist() == [c for c in glyphs.classes.tolist() if c > 0]
