"""What every study shares: its options and the digit model's test-split logits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from model.checkpoint import Checkpoint, load_checkpoint
from model.devices import select_device
from training.data import DigitData, Split, load_split
from training.loop import predict_logits

REPORTS = Path("docs/studies")


@dataclass(frozen=True)
class StudyOptions:
    data_dir: str | None = None
    out: Path = REPORTS
    checkpoint: Path = Path("weights/digit.pt")
    device: str = "auto"
    seed: int = 0
    epochs: int | None = None  # training runs of a study: None for the study's own default
    limit: int | None = None  # train on only this many images (smoke runs)
    fashion_data_dir: str | None = None  # Fashion-MNIST (architectures); default: its env var or system install
    datasets: tuple[str, ...] = ("fashion", "mnist")  # the architectures study's tables
    models: tuple[str, ...] | None = None  # the architectures study's rows to re-run; None: every row
    jobs: int = 1  # processes training cross-validation folds side by side
    setting: str = "frozen-encoder"  # label-noise: "frozen-encoder", or "end-to-end" (the original's)
    seeds: int = 1  # label-noise end to end: seeds per configuration
    rates: tuple[float, ...] | None = None  # label-noise end to end: only these flip rates (None: all)
    losses: tuple[str, ...] | None = None  # label-noise end to end: only these losses (None: all)


@dataclass(frozen=True)
class TestLogits:
    """The checkpoint's calibrated logits on every MNIST test image, with the raw images."""

    checkpoint: Checkpoint
    split: Split
    logits: torch.Tensor
    labels: torch.Tensor


def test_logits(options: StudyOptions) -> TestLogits:
    device = select_device(options.device)
    checkpoint = load_checkpoint(options.checkpoint, map_location=device)
    split = load_split("test", options.data_dir)
    data = DigitData.from_split(split)
    logits = predict_logits(checkpoint.model, data.inputs, device, batch_size=500, description="test split")
    return TestLogits(checkpoint, split, logits, data.labels)


# The two parts of docs/studies/label-noise.md, one per setting: each run rewrites its own part.
FROZEN_PART = "frozen-encoder"
END_TO_END_PART = "end-to-end"
_PARTS = (FROZEN_PART, END_TO_END_PART)


def _marker(part: str) -> str:
    return f"<!-- part: {part} -->"


def write_part(report: Path, part: str, text: str) -> None:
    """Write one part of a report made of parts, keeping the others as they are."""
    parts = {}
    if report.exists():
        current, body = None, report.read_text()
        if not body.startswith(_marker(_PARTS[0])) and _marker(_PARTS[1]) not in body:
            body = _marker(_PARTS[0]) + "\n" + body  # a report written before it had parts
        for line in body.splitlines(keepends=True):
            found = next((p for p in _PARTS if line.strip() == _marker(p)), None)
            if found:
                current = found
                parts[current] = ""
            elif current:
                parts[current] += line
    parts[part] = text.rstrip() + "\n"
    report.write_text("\n".join(f"{_marker(p)}\n{parts[p]}" for p in _PARTS if p in parts))


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
