"""``python -m training ensemble``: several checkpoints of one classifier, trained by one recipe
from different seeds, joined into one checkpoint that reads them together.

The members must agree on everything but their seed: task, architecture, arguments, version,
preprocessing, and the validation split they held out (``--split-seed``, ``--val-size``), since the
ensemble's temperature is fitted on that split and no member may have trained on it. The test
split is read once, for the metrics the checkpoint records.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from model.architectures import build_model, count_parameters
from model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from training.classifier import calibrate_and_test, held_out_split
from training.data import MNIST, Dataset, prepare
from training.plots import plot_confusion
from training.provenance import provenance, write_json

SHARED = ("name", "architecture", "arguments", "version", "preprocess", "labels")


@dataclass(frozen=True)
class EnsembleSpec:
    """What a task's ensembles are: the architecture that holds the members, and its version."""

    architecture: str
    member_architecture: str
    version: str
    dataset: Dataset = MNIST


def check_members(checkpoints: list[Checkpoint], spec: EnsembleSpec) -> tuple[int, int]:
    """Refuse members that differ in more than their seed; return their shared (split seed, validation size)."""
    if len(checkpoints) < 2:
        raise ValueError("an ensemble needs at least two member checkpoints")
    first = checkpoints[0].metadata
    if first["architecture"] != spec.member_architecture:
        raise ValueError(f"members must be {spec.member_architecture} checkpoints, not {first['architecture']}")
    for checkpoint in checkpoints[1:]:
        for key in SHARED:
            if checkpoint.metadata[key] != first[key]:
                raise ValueError(f"{checkpoint.path} differs from {checkpoints[0].path} in {key!r}")
        if held_out_split(checkpoint.metadata) != held_out_split(first):
            raise ValueError(f"{checkpoint.path} held out another validation split than {checkpoints[0].path}")
    seeds = [c.metadata["hyperparameters"]["seed"] for c in checkpoints]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"members must come from different seeds, got {seeds}")
    return held_out_split(first)


def assemble(members: list[Path], out: Path, spec: EnsembleSpec, data_dir: str | None, device: torch.device) -> Path:
    """Join the member checkpoints, fit the ensemble's temperature on their validation split,
    record its test metrics, and write checkpoint, ``metrics.json`` and confusion matrix, with
    each member's training curves and metrics (where found beside it) under ``members/seed-N``."""
    started = time.time()
    checkpoints = [load_checkpoint(path, map_location=device) for path in members]
    split_seed, val_size = check_members(checkpoints, spec)
    first = checkpoints[0].metadata

    model = build_model(spec.architecture, {"members": len(checkpoints), **first["arguments"]}).to(device)
    for member, checkpoint in zip(model.members, checkpoints, strict=True):
        member.load_state_dict(checkpoint.model.state_dict())
    data = prepare(data_dir, val_size, split_seed, dataset=spec.dataset)
    metrics, confusion = calibrate_and_test(model, data, device)

    recorded = [{"seed": c.metadata["hyperparameters"]["seed"], "sha256": c.sha256, "version": c.metadata["version"],
                 "code_version": c.metadata["code_version"], "train_seconds": c.metadata["train_seconds"],
                 "val_accuracy": c.metadata["metrics"]["val_accuracy"], "test_accuracy": c.metadata["metrics"]["test_accuracy"]}
                for c in checkpoints]
    hyperparameters = {k: v for k, v in first["hyperparameters"].items() if k != "seed"}
    metadata = {
        **{key: first[key] for key in ("name", "task", "labels", "preprocess", "dataset")},
        "architecture": spec.architecture,
        "arguments": {"members": len(checkpoints), **first["arguments"]},
        "version": spec.version,
        "parameters": count_parameters(model),
        "members": recorded,
        "hyperparameters": {**hyperparameters, "split_seed": split_seed,
                            "ensemble": "mean of the members' calibrated probabilities, then a temperature fitted on validation"},
        "metrics": metrics,
        **provenance(device, started),
    }
    metadata["train_seconds"] = round(sum(m["train_seconds"] for m in recorded) + metadata["train_seconds"], 1)
    save_checkpoint(model, metadata, out)
    artefacts = out.with_suffix("")
    for checkpoint, member in zip(checkpoints, recorded, strict=True):  # each member's curves stay with it
        found = [checkpoint.path.with_suffix("") / name for name in ("curves.png", "metrics.json")] if checkpoint.path else []
        target = artefacts / "members" / f"seed-{member['seed']}"
        for source in (f for f in found if f.is_file()):
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target / source.name)
    write_json(artefacts / "metrics.json", {"metrics": metrics, "members": recorded, "train_seconds": metadata["train_seconds"]})
    plot_confusion(confusion, list(first["labels"]), artefacts / "confusion.png",
                   f"{spec.architecture} of {len(checkpoints)}, {spec.dataset.name} test split")
    return out
