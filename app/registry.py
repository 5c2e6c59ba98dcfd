"""Loading the checkpoints of the catalog once, onto the chosen device, and warming them up."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from app.catalog import CATALOG, SHARED_PREPROCESSING, ModelSpec
from model.architectures import count_parameters
from model.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from model.devices import select_device
from model.inference import for_inference

log = logging.getLogger("app.registry")


@dataclass(frozen=True)
class Models:
    """The loaded checkpoints by catalog name (identity, metadata, checksum, preprocessing), their
    networks in serving form (``model.inference.for_inference``: what runs), the ``model`` field
    of their responses (name and version, e.g. ``digit:1.2.0``), and the device. Plain mappings:
    a handler reads what it needs without a call into this module."""

    checkpoints: Mapping[str, Checkpoint]
    nets: Mapping[str, nn.Module]
    device: torch.device
    catalog: Mapping[str, ModelSpec]

    @cached_property
    def ids(self) -> dict[str, str]:
        """Computed once (at load, for its log line); then a plain attribute."""
        return {name: f"{c.metadata['name']}:{c.metadata['version']}" for name, c in self.checkpoints.items()}

    def describe(self) -> list[dict[str, Any]]:
        """What ``GET /models`` shows for each model."""
        out = []
        for name, checkpoint in self.checkpoints.items():
            meta = checkpoint.metadata
            out.append({
                "name": meta["name"],
                "id": self.ids[name],
                "task": meta.get("task", ""),
                "architecture": meta["architecture"],
                "version": meta["version"],
                "sha256": checkpoint.sha256,
                "parameters": count_parameters(checkpoint.model),
                "device": str(self.device),
                "labels": meta.get("labels", []),
                "metrics": meta.get("metrics", {}),
                "created": meta.get("created", ""),
                "file": self.catalog[name].file,
                "reports": list(self.catalog[name].reports),
            })
        return out


def load_models(weights_dir: Path, device_choice: str, catalog: Mapping[str, ModelSpec] = CATALOG) -> Models:
    """Verify and load every checkpoint of the catalog, and warm each up through its handler;
    raises CheckpointError (naming the file) on any problem, including digit checkpoints trained
    with different preprocessing."""
    device = select_device(device_choice)
    loaded = {name: load_checkpoint(weights_dir / spec.file, map_location=device) for name, spec in catalog.items()}
    configs = {name: loaded[name].preprocess for name in SHARED_PREPROCESSING if name in loaded}
    if len(set(configs.values())) > 1:
        raise CheckpointError(f"the checkpoints were trained with different preprocessing: {configs}")
    nets = {name: for_inference(checkpoint.model, device) for name, checkpoint in loaded.items()}
    models = Models(loaded, nets, device, catalog)
    with torch.inference_mode():
        for spec in catalog.values():
            spec.handler.warm_up(models)
    for name, checkpoint in loaded.items():
        log.info("loaded %s (%s, sha256 %s) on %s", catalog[name].file, models.ids[name], checkpoint.sha256[:12], device)
    return models
