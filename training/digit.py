"""DigitNet: train on MNIST with writing and affine augmentation, digits scanned to fill their frame,
and 1s and 7s as European writers draw them (``training.classifier``'s recipe). Networks of this
recipe trained from different seeds join into one checkpoint that reads them together
(``ENSEMBLE``, ``python -m training ensemble digit``).

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
from training.ensemble import EnsembleSpec

ARGUMENTS: dict[str, Any] = {"channels": [32, 64], "features": 256, "dropout": 0.25}
LABELS = list(MNIST.labels)
VERSION = "1.5.0"
TASK = ClassifierTask(name="digit", description="classify one handwritten digit", dataset=MNIST,
                      architecture="DigitNet", arguments=ARGUMENTS, version=VERSION, augment=WritingAugment(),
                      swaps=(FramedScans(), EuropeanDigits()))
ENSEMBLE = EnsembleSpec(architecture="DigitEnsemble", member_architecture="DigitNet", version="1.6.0")


def load_init(path: Path, device: torch.device) -> Checkpoint:
    """The trained DigitNet whose encoder starts the sequence and digit-sum models; of an
    ensemble, its first member (they share one architecture, and these models need one encoder)."""
    checkpoint = load_checkpoint(path, map_location=device)
    if checkpoint.metadata["architecture"] == ENSEMBLE.architecture:
        arguments = {k: v for k, v in checkpoint.metadata["arguments"].items() if k != "members"}
        metadata = {**checkpoint.metadata, "architecture": ENSEMBLE.member_architecture, "arguments": arguments}
        return Checkpoint(model=checkpoint.model.members[0], metadata=metadata, sha256=checkpoint.sha256, path=checkpoint.path)
    if checkpoint.metadata["architecture"] != "DigitNet":
        raise ValueError(f"--init-from must be a DigitNet checkpoint, {path} is {checkpoint.metadata['architecture']}")
    return checkpoint
