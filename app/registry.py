"""Loading the checkpoints once, onto the chosen device, and warming them up."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.architectures import count_parameters
from model.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from model.devices import select_device
from model.inference import for_inference
from model.line import LineConfig, read_lines
from model.preprocess import PreprocessConfig, normalise

log = logging.getLogger("app.registry")

CHECKPOINTS = {"digit": "digit.pt", "sequence": "sequence.pt", "digit_sum": "digit_sum.pt", "fashion": "fashion.pt",
               "line_reader": "line_reader.pt"}
# The digit models share one preprocessing (the sequence endpoint feeds the same arrays to two
# of them); the garment model has its own, and the line reader its line images (``model.line``).
DIGIT_MODELS = ("digit", "sequence", "digit_sum")
# Each model's study reports, as paths in the repository (``python -m training study ...`` writes them).
REPORTS = {
    "digit": ["docs/studies/error-gallery.md", "docs/studies/calibration.md", "docs/studies/architectures.md"],
    "sequence": ["docs/studies/label-noise.md"],
    "digit_sum": [],
    "fashion": ["docs/studies/architectures.md"],
    "line_reader": ["docs/strip-reading.md"],
}


@dataclass(frozen=True)
class Nets:
    """The networks in their serving form (``model.inference.for_inference``): what runs."""

    digit: nn.Module
    sequence: nn.Module
    digit_sum: nn.Module
    fashion: nn.Module
    line_reader: nn.Module


@dataclass(frozen=True)
class Models:
    """The loaded checkpoints (identity, metadata, checksum), their networks in serving form,
    the device those run on, and the preprocessing the digit models were trained with (one for
    all of them: the sequence endpoint feeds the same arrays to two of them). The garment model
    carries its own (``fashion.preprocess``). The line reader reads strips whole; ``line``
    is its line-image configuration."""

    digit: Checkpoint
    sequence: Checkpoint
    digit_sum: Checkpoint
    fashion: Checkpoint
    line_reader: Checkpoint
    nets: Nets
    device: torch.device
    preprocess: PreprocessConfig
    line: LineConfig

    def all(self) -> dict[str, Checkpoint]:
        return {"digit": self.digit, "sequence": self.sequence, "digit_sum": self.digit_sum, "fashion": self.fashion,
                "line_reader": self.line_reader}

    def describe(self) -> list[dict[str, Any]]:
        """What ``GET /models`` shows for each model."""
        out = []
        for key, checkpoint in self.all().items():
            meta = checkpoint.metadata
            out.append({
                "name": meta["name"],
                "id": model_id(checkpoint),
                "task": meta.get("task", ""),
                "architecture": meta["architecture"],
                "version": meta["version"],
                "sha256": checkpoint.sha256,
                "parameters": count_parameters(checkpoint.model),
                "device": str(self.device),
                "labels": meta.get("labels", []),
                "metrics": meta.get("metrics", {}),
                "created": meta.get("created", ""),
                "file": CHECKPOINTS[key],
                "reports": REPORTS[key],
            })
        return out


def model_id(checkpoint: Checkpoint) -> str:
    """The ``model`` field of responses: name and version, e.g. ``digit:1.0.0``."""
    return f"{checkpoint.metadata['name']}:{checkpoint.metadata['version']}"


@torch.inference_mode()
def _warm_up(models: Models) -> None:
    """Run each network once so the first real request pays no lazy initialisation."""
    images = normalise(torch.zeros(2, 28, 28).numpy(), models.preprocess).to(models.device)
    models.nets.digit(images)
    models.nets.sequence(images, torch.tensor([2]))
    models.nets.digit_sum(images, torch.tensor([1, 2], device=models.device))
    models.nets.fashion(normalise(torch.zeros(2, 28, 28).numpy(), models.fashion.preprocess).to(models.device))
    read_lines(models.nets.line_reader, [np.zeros((models.line.height, 64), np.float32)] * 2, models.device, models.line)


def load_models(weights_dir: Path, device_choice: str) -> Models:
    """Verify and load every checkpoint; raises CheckpointError (naming the file) on any problem,
    including digit checkpoints trained with different preprocessing."""
    device = select_device(device_choice)
    loaded = {key: load_checkpoint(weights_dir / name, map_location=device) for key, name in CHECKPOINTS.items()}
    configs = {key: loaded[key].preprocess for key in DIGIT_MODELS}
    if len(set(configs.values())) != 1:
        raise CheckpointError(f"the checkpoints were trained with different preprocessing: {configs}")
    nets = Nets(**{key: for_inference(checkpoint.model, device) for key, checkpoint in loaded.items()})
    line = LineConfig.from_dict(loaded["line_reader"].metadata["preprocess"])
    models = Models(device=device, preprocess=configs["digit"], line=line, nets=nets, **loaded)
    _warm_up(models)
    for key, checkpoint in loaded.items():
        log.info("loaded %s (%s, sha256 %s) on %s", CHECKPOINTS[key], model_id(checkpoint), checkpoint.sha256[:12], device)
    return models
