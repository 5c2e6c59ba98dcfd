"""DigitNet: train on MNIST with affine augmentation (``training.classifier``'s recipe)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from model.checkpoint import Checkpoint, load_checkpoint
from training.augment import AffineAugment
from training.classifier import ClassifierTask, evaluate_classifier, train_classifier
from training.data import MNIST
from training.options import RunOptions

ARGUMENTS: dict[str, Any] = {"channels": [32, 64], "features": 256, "dropout": 0.25}
LABELS = list(MNIST.labels)
VERSION = "1.0.0"
TASK = ClassifierTask(name="digit", description="classify one handwritten digit", dataset=MNIST,
                      architecture="DigitNet", arguments=ARGUMENTS, version=VERSION, augment=AffineAugment())

def train(options: RunOptions) -> Path:
    return train_classifier(options, TASK)


def evaluate_command(checkpoint: Checkpoint, data_dir: str | None, device: torch.device) -> dict[str, Any]:
    """``python -m training evaluate weights/digit.pt``: recompute the test metrics."""
    return evaluate_classifier(checkpoint, data_dir, device, MNIST)


def load_init(path: Path, device: torch.device) -> Checkpoint:
    """The trained DigitNet whose encoder starts the sequence and digit-sum models."""
    checkpoint = load_checkpoint(path, map_location=device)
    if checkpoint.metadata["architecture"] != "DigitNet":
        raise ValueError(f"--init-from must be a DigitNet checkpoint, {path} is {checkpoint.metadata['architecture']}")
    return checkpoint
