"""DigitNet: train on MNIST with writing and affine augmentation, digits scanned to fill their frame,
and 1s and 7s as European writers draw them (``training.classifier``'s recipe).

``TASK.train`` and ``TASK.evaluate_command`` are what the CLI runs for ``digit``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from model.checkpoint import Checkpoint, load_checkpoint
from training.augment import EuropeanDigits, FramedScans, WritingAugment
from training.classifier import ClassifierTask
from training.data import MNIST

ARGUMENTS: dict[str, Any] = {"channels": [32, 64], "features": 256, "dropout": 0.25}
LABELS = list(MNIST.labels)
VERSION = "1.5.0"
TASK = ClassifierTask(name="digit", description="classify one handwritten digit", dataset=MNIST,
                      architecture="DigitNet", arguments=ARGUMENTS, version=VERSION, augment=WritingAugment(),
                      swaps=(FramedScans(), EuropeanDigits()))


def load_init(path: Path, device: torch.device) -> Checkpoint:
    """The trained DigitNet whose encoder starts the sequence and digit-sum models."""
    checkpoint = load_checkpoint(path, map_location=device)
    if checkpoint.metadata["architecture"] != "DigitNet":
        raise ValueError(f"--init-from must be a DigitNet checkpoint, {path} is {checkpoint.metadata['architecture']}")
    return checkpoint
