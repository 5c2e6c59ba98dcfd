"""The page at ``/``, used as a person would, in a real browser: Playwright driving Debian's
chromium (``executable_path``: no browser download), with every host but 127.0.0.1 unresolvable,
against the service started as ``make serve`` starts it.

``PAGE_SCREENSHOT=docs/page.png`` makes the strip test save the README's screenshot.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator

import numpy as np
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from bench.processes import running_service
from tests.app.conftest import correct_indices
from training.strips import encode, make_strip

SCALE = 10  # canvas pixels per MNIST pixel: the 280-pixel pad holds a 28-pixel digit


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    with running_service() as service:
        yield service.url


@pytest.fixture(scope="module")
def browser(chromium):
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser, served) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 900}, has_touch=True)
    opened = context.new_page()
    opened.goto(served)
    yield opened
    context.close()


def strokes(digit: np.ndarray) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """A real MNIST digit as pen strokes on the pad: one stroke along each run of ink in each row."""
    out = []
    for row, pixels in enumerate(digit > 100):
        columns = np.flatnonzero(pixels)
        if columns.size == 0:
            continue
        starts = np.r_[columns[0], columns[1:][np.diff(columns) > 1]]
        ends = np.r_[columns[:-1][np.diff(columns) > 1], columns[-1]]
        for start, end in zip(starts, ends):
            out.append((((start + 0.5) * SCALE, (row + 0.5) * SCALE), ((end + 0.5) * SCALE, (row + 0.5) * SCALE)))
    return out


def draw_with_mouse(page: Page, digit: np.ndarray) -> None:
    box = page.locator("#pad").bounding_box()
    for (x0, y0), (x1, y1) in strokes(digit):
        page.mouse.move(box["x"] + x0, box["y"] + y0)
        page.mouse.down()
        page.mouse.move(box["x"] + x1, box["y"] + y1, steps=3)
        page.mouse.up()


def draw_with_touch(page: Page, digit: np.ndarray) -> None:
    """Touch events as a finger sends them (Chromium turns them into touch pointer events)."""
    box = page.locator("#pad").bounding_box()
    session = page.context.new_cdp_session(page)
    for (x0, y0), (x1, y1) in strokes(digit):
        for kind, x, y in (("touchStart", x0, y0), ("touchMove", (x0 + x1) / 2, y0), ("touchMove", x1, y1)):
            session.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": box["x"] + x, "y": box["y"] + y}]})
        session.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


@pytest.fixture(scope="module")
def known(mnist_test, digit_checkpoint) -> np.ndarray:
    return correct_indices(mnist_test, digit_checkpoint, 6)


def test_a_digit_drawn_with_the_mouse_is_read(page, mnist_test, known):
    for index in known[:3]:
        page.get_by_role("button", name="Clear").click()
        draw_with_mouse(page, mnist_test.images[index])
        page.get_by_role("button", name="Predict").click()
        expect(page.locator("#answer strong")).to_have_text(str(mnist_test.labels[index]), timeout=15_000)
        expect(page.locator("#bars li")).to_have_count(10)
        expect(page.locator("#bars li.best")).to_contain_text(str(mnist_test.labels[index]))


def test_a_digit_drawn_with_a_finger_is_read(page, mnist_test, known):
    index = known[3]
    draw_with_touch(page, mnist_test.images[index])
    page.locator("#pad").focus()
    page.keyboard.press("Enter")  # the pad works from the keyboard too
    expect(page.locator("#answer strong")).to_have_text(str(mnist_test.labels[index]), timeout=15_000)


def test_a_blank_pad_says_no_digit_was_found(page):
    page.get_by_role("button", name="Predict").click()
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible(timeout=15_000)
    expect(alert).to_contain_text("No digit found")
    expect(alert).to_contain_text("no_digit_found")


def test_a_dropped_strip_is_read_with_its_boxes(page, mnist_test, known, rng):
    strip = make_strip(mnist_test.images[known], mnist_test.labels[known], rng, height=70)
    page.get_by_label("a row of digits (a strip)").check()
    transfer = page.evaluate_handle("""(data) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "strip.png", {type: "image/png"}));
        return transfer;
    }""", base64.b64encode(encode(strip.image)).decode())
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    expect(page.locator("#answer strong")).to_have_text("".join(map(str, strip.labels)), timeout=15_000)
    expect(page.locator("#answer")).to_contain_text(f"Contains a 4: {'yes' if 4 in strip.labels else 'no'}")
    expect(page.locator("#boxes > div")).to_have_count(len(strip.labels))
    # The boxes lie over the image, left to right.
    lefts = [page.locator("#boxes > div").nth(i).bounding_box()["x"] for i in range(len(strip.labels))]
    assert lefts == sorted(lefts)
    if os.environ.get("PAGE_SCREENSHOT"):
        draw_with_mouse(page, mnist_test.images[known[0]])
        page.screenshot(path=os.environ["PAGE_SCREENSHOT"], full_page=True)


def test_a_drawn_digit_plus_a_number(page, mnist_test, known):
    index = known[4]
    draw_with_mouse(page, mnist_test.images[index])
    page.get_by_label("Number to add").fill("39")
    page.get_by_role("button", name="Add").click()
    expect(page.locator("#sum-answer")).to_contain_text(f"+ 39 = {mnist_test.labels[index] + 39}", timeout=15_000)
