"""FashionNet: our best CNN on Fashion-MNIST, the model served at ``POST /predict/fashion``.

Same recipe as the digit model (``training.classifier``), with garment augmentation (mirror,
light affine jitter, random erasing) and label smoothing, which both help on Fashion-MNIST's
confusable upper-body classes (shirt, T-shirt, pullover, coat).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from model.checkpoint import Checkpoint
from training.augment import GarmentAugment
from training.classifier import ClassifierTask, evaluate_classifier, train_classifier
from training.data import FASHION_MNIST
from training.options import RunOptions

ARGUMENTS: dict[str, Any] = {"channels": [32, 64, 128], "features": 256, "dropout": 0.3}
VERSION = "1.0.0"
TASK = ClassifierTask(name="fashion", description="classify one Fashion-MNIST garment", dataset=FASHION_MNIST,
                      architecture="FashionNet", arguments=ARGUMENTS, version=VERSION, augment=GarmentAugment(),
                      label_smoothing=0.1)


def train(options: RunOptions) -> Path:
    return train_classifier(options, TASK)


def evaluate_command(checkpoint: Checkpoint, data_dir: str | None, device: torch.device) -> dict[str, Any]:
    """``python -m training evaluate weights/fashion.pt``: recompute the test metrics."""
    return evaluate_classifier(checkpoint, data_dir, device, FASHION_MNIST)
