"""Loading the three checkpoints once, onto the chosen device, and warming them up."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model.checkpoint import Checkpoint, load_checkpoint
from model.preprocess import normalise

log = logging.getLogger("app.registry")

CHECKPOINTS = {"digit": "digit.pt", "sequence": "sequence.pt", "digit_sum": "digit_sum.pt"}


def resolve_device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("DEVICE=cuda but CUDA is not available")
    return torch.device(choice)


@dataclass(frozen=True)
class Models:
    """The loaded checkpoints and the device they run on."""

    digit: Checkpoint
    sequence: Checkpoint
    digit_sum: Checkpoint
    device: torch.device

    def all(self) -> dict[str, Checkpoint]:
        return {"digit": self.digit, "sequence": self.sequence, "digit_sum": self.digit_sum}

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
                "parameters": meta.get("parameters", sum(p.numel() for p in checkpoint.model.parameters())),
                "device": str(self.device),
                "labels": meta.get("labels", []),
                "metrics": meta.get("metrics", {}),
                "created": meta.get("created", ""),
                "file": CHECKPOINTS[key],
            })
        return out


def model_id(checkpoint: Checkpoint) -> str:
    """The ``model`` field of responses: name and version, e.g. ``digit:1.0.0``."""
    return f"{checkpoint.metadata['name']}:{checkpoint.metadata['version']}"


@torch.inference_mode()
def _warm_up(models: Models) -> None:
    """Run each network once so the first real request pays no lazy initialisation."""
    images = normalise(torch.zeros(2, 28, 28).numpy()).to(models.device)
    models.digit.model(images)
    models.sequence.model(images, torch.tensor([2]))
    models.digit_sum.model(images, torch.tensor([1, 2], device=models.device))


def load_models(weights_dir: Path, device_choice: str) -> Models:
    """Verify and load every checkpoint; raises CheckpointError (naming the file) on any problem."""
    device = resolve_device(device_choice)
    loaded = {key: load_checkpoint(weights_dir / name, map_location=device) for key, name in CHECKPOINTS.items()}
    models = Models(device=device, **loaded)
    _warm_up(models)
    for key, checkpoint in loaded.items():
        log.info("loaded %s (%s, sha256 %s) on %s", CHECKPOINTS[key], model_id(checkpoint), checkpoint.sha256[:12], device)
    return models
