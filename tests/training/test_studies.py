"""The studies' commands on the committed digit checkpoint and the real MNIST test split."""

from __future__ import annotations

import re

from PIL import Image

from tests.conftest import WEIGHTS
from training.cli import main


def _run(name: str, mnist_dir, tmp_path) -> str:
    assert main(["study", name, "--data-dir", str(mnist_dir), "--device", "cpu", "--out", str(tmp_path),
                 "--checkpoint", str(WEIGHTS / "digit.pt")]) == 0
    return (tmp_path / f"{name}.md").read_text()


def test_error_gallery_shows_every_test_error(mnist_dir, digit_checkpoint, tmp_path):
    report = _run("error-gallery", mnist_dir, tmp_path)
    errors = round(digit_checkpoint.metadata["metrics"]["test_error"] * 10_000)
    assert f"**{100 * digit_checkpoint.metadata['metrics']['test_accuracy']:.2f}% accuracy" in report
    assert f"({errors} digits)" in report
    every_error = report.split("## Every error")[1]
    rows = re.findall(r"^\| (\d+) \| (\d) \| (\d) \|", every_error, re.MULTILINE)
    assert len(rows) == errors and all(true != predicted for _, true, predicted in rows)
    pairs = report.split("## Confusion pairs")[1].split("## Every error")[0]
    assert sum(int(n) for n in re.findall(r"^\| \d \| \d \| (\d+) \|$", pairs, re.MULTILINE)) == errors
    with Image.open(tmp_path / "error-gallery.png") as figure:
        assert figure.format == "PNG" and figure.width > 1000


def test_calibration_reproduces_the_recorded_ece(mnist_dir, digit_checkpoint, tmp_path):
    report = _run("calibration", mnist_dir, tmp_path)
    metrics = digit_checkpoint.metadata["metrics"]
    assert f"| before (T = 1) | {100 * metrics['test_ece_uncalibrated']:.3f}% |" in report
    assert f"| after (T = {metrics['temperature']:.3f}) | {100 * metrics['test_ece']:.3f}% |" in report
    bins = re.findall(r"^\| \d\.\d{3}-\d\.\d{3} \| (\d+) \|", report, re.MULTILINE)
    assert len(bins) == 15 and sum(int(n) for n in bins) == 10_000
    with Image.open(tmp_path / "calibration.png") as figure:
        assert figure.format == "PNG"
