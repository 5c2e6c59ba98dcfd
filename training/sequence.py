"""SequenceNet: does a sequence of 3-30 MNIST digits contain a 4?

The CNN starts from a trained DigitNet's encoder and stays frozen, so every digit's embedding can
be computed once (the clean image plus a few augmented views) and the LSTM trained on fresh
random sequences of those embeddings each epoch: minutes on a CPU instead of hours. Because the
encoder works on each image alone (eval mode), reading precomputed embeddings is exactly the
computation ``SequenceNet.forward`` performs on the images.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from model.architectures import SequenceNet, count_parameters, pad_by_lengths
from model.checkpoint import Checkpoint, save_checkpoint
from model.devices import select_device
from model.preprocess import DEFAULT_CONFIG
from training.augment import AffineAugment
from training.data import (
    DigitData,
    Sequences,
    flip_labels,
    load_split,
    prepare,
    sample_sequences,
)
from training.digit import load_init
from training.loop import Step, batches, optimise, seed_everything, train_epochs
from training.options import RunOptions
from training.plots import confusion_matrix, plot_confusion, plot_curves
from training.provenance import provenance, write_json

HIDDEN = 128
VERSION = "1.1.0"
LABELS = ["no 4", "contains 4"]
TRAIN_SEQUENCES = 40_000  # fresh ones every epoch
VAL_SEQUENCES = 5_000
TEST_SEQUENCES = 10_000
TEST_SEED = 2_024  # the same 10,000 test sequences for every model and every run
AUGMENTED_VIEWS = 3
DEFAULT_INIT = Path("weights/digit.pt")


@torch.inference_mode()
def embed(encoder: torch.nn.Module, inputs: torch.Tensor, device: torch.device, views: int = 0,
          generator: torch.Generator | None = None, batch_size: int = 1024) -> torch.Tensor:
    """Encoder embeddings [1 + views, N, F] on ``device``: the clean images, then augmented views."""
    encoder.eval()
    augment = AffineAugment()
    out = []
    for view in range(1 + views):
        chunks = []
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start : start + batch_size]
            if view:
                batch = augment(batch, generator)
            chunks.append(encoder(batch.to(device)))
        out.append(torch.cat(chunks))
    return torch.stack(out)


def read_sequences(model: SequenceNet, embeddings: torch.Tensor, sequences: Sequences, batch_size: int = 512) -> torch.Tensor:
    """P(contains a 4) for every sequence, reading the clean embeddings [N, F] of its digits."""
    probabilities = []
    offsets = sequences.offsets()
    with torch.inference_mode():
        model.eval()
        for start in range(0, len(sequences), batch_size):
            stop = min(start + batch_size, len(sequences))
            flat = embeddings[torch.as_tensor(sequences.indices[offsets[start] : offsets[stop]], device=embeddings.device)]
            lengths = torch.as_tensor(sequences.lengths[start:stop])
            probabilities.append(torch.sigmoid(model.read(pad_by_lengths(flat, lengths), lengths)).float().cpu())
    return torch.cat(probabilities)


GCE_Q = 0.7  # Zhang & Sabuncu (2018): q -> 0 is cross-entropy, q = 1 the noise-tolerant MAE


def sequence_loss(name: str, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy, or generalized cross-entropy (1 - p_target^q) / q, which bounds the
    loss of a confidently "wrong" label, so flipped labels pull less than under cross-entropy."""
    if name == "bce":
        return F.binary_cross_entropy_with_logits(logits, targets)
    if name == "gce":
        p_target = torch.where(targets > 0.5, torch.sigmoid(logits), torch.sigmoid(-logits))
        return ((1 - p_target.clamp_min(1e-7) ** GCE_Q) / GCE_Q).mean()
    raise ValueError(f"unknown loss {name!r}: use 'bce' or 'gce'")


def sequence_metrics(probabilities: torch.Tensor, labels: np.ndarray) -> dict[str, Any]:
    predicted = (probabilities >= 0.5).long().numpy()
    accuracy = float((predicted == labels).mean())
    return {
        "test_accuracy": accuracy,
        "test_error": 1 - accuracy,
        "test_sequences": len(labels),
        "test_positive_share": float(labels.mean()),
        "confusion": confusion_matrix(labels, predicted, 2).tolist(),
    }


def test_sequences(test_labels: np.ndarray) -> Sequences:
    return sample_sequences(test_labels, TEST_SEQUENCES, seed=TEST_SEED)


def train(options: RunOptions) -> Path:
    started = time.time()
    generator = seed_everything(options.seed)
    device = select_device(options.device)
    init_path = options.init_from or DEFAULT_INIT
    digit = load_init(init_path, device)
    arguments = {**digit.metadata["arguments"], "hidden": HIDDEN}
    model = SequenceNet(**arguments).to(device)
    model.encoder.load_state_dict(digit.model.encoder.state_dict())
    model.encoder.requires_grad_(False)

    data = prepare(options.data_dir, options.val_size, options.seed, options.limit)
    fit, val = data.fit, data.val
    fit_views = embed(model.encoder, fit.inputs, device, AUGMENTED_VIEWS, generator)
    val_embeddings = embed(model.encoder, val.inputs, device)[0]
    fit_digits, val_digits = fit.labels.numpy(), val.labels.numpy()
    train_count = min(TRAIN_SEQUENCES, 4 * len(fit_digits))
    val_sequences = sample_sequences(val_digits, min(VAL_SEQUENCES, 4 * len(val_digits)), seed=options.seed + 1)
    val_noisy = torch.as_tensor(flip_labels(val_sequences.labels, options.label_noise, 2, options.seed + 2)).float()

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=options.lr, weight_decay=1e-4)
    steps = -(-train_count // options.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=options.lr, total_steps=options.epochs * steps, pct_start=0.15)
    def epoch_batches(epoch: int) -> Iterator[np.ndarray]:
        sequences = sample_sequences(fit_digits, train_count, seed=options.seed * 1000 + epoch)
        targets = torch.as_tensor(flip_labels(sequences.labels, options.label_noise, 2, options.seed * 1000 + epoch)).float()
        model.lstm.train()
        offsets = sequences.offsets()
        for index in batches(len(sequences), options.batch_size, generator):
            index = index.sort().values.numpy()
            digits = np.concatenate([sequences.indices[offsets[i] : offsets[i + 1]] for i in index])
            yield index, torch.as_tensor(sequences.lengths[index]), digits, targets[index]

    def step(batch: tuple[np.ndarray, torch.Tensor, np.ndarray, torch.Tensor]) -> Step:
        index, lengths, digits, targets = batch
        views = torch.randint(0, 1 + AUGMENTED_VIEWS, (len(digits),), generator=generator)
        flat = fit_views[views.to(device), torch.as_tensor(digits, device=device)]
        logits = model.read(pad_by_lengths(flat, lengths), lengths)
        targets = targets.to(device)
        loss = sequence_loss(options.loss, logits, targets)
        optimise(loss, optimizer, scheduler)
        return Step(loss.item(), len(index), int((logits > 0).float().eq(targets).sum()))

    def validate(epoch: int) -> dict[str, float]:
        val_prob = read_sequences(model, val_embeddings, val_sequences)
        val_targets = torch.as_tensor(val_sequences.labels).float()
        record = {"val_loss": float(F.binary_cross_entropy(val_prob.clamp(1e-7, 1 - 1e-7), val_targets)),
                  "val_acc": float(((val_prob >= 0.5).float() == val_targets).float().mean())}
        if options.label_noise > 0:
            record["val_acc_noisy"] = float(((val_prob >= 0.5).float() == val_noisy).float().mean())
        return record

    # With noisy training labels the validation labels are as noisy (a user has no clean ones):
    # the checkpoint is chosen on them, while the clean accuracy is recorded for the curves.
    fitted = train_epochs(options.epochs, "sequence", steps, epoch_batches, step, validate,
                          score=lambda r: r.get("val_acc_noisy", r["val_acc"]), keep=lambda: copy.deepcopy(model.state_dict()))
    history = fitted.history

    model.load_state_dict(fitted.kept)
    test = DigitData.from_split(data.test)
    sequences = test_sequences(data.test.labels)
    metrics = sequence_metrics(read_sequences(model, embed(model.encoder, test.inputs, device)[0], sequences), sequences.labels)
    confusion = np.array(metrics.pop("confusion"))
    metrics["val_accuracy" if options.label_noise == 0 else "val_accuracy_noisy"] = fitted.score

    metadata = {
        "name": "sequence",
        "task": "does a sequence of digit images contain a 4",
        "architecture": "SequenceNet",
        "arguments": arguments,
        "version": VERSION,
        "labels": LABELS,
        "preprocess": DEFAULT_CONFIG.to_dict(),
        "parameters": count_parameters(model),
        "dataset": {**data.record(),
                    "sequences": "lengths N(10, 3) rounded, clipped to 3..30; digits uniform from the split; "
                                 f"test: {TEST_SEQUENCES} sequences of the test split, seed {TEST_SEED}"},
        "hyperparameters": {**options.hyperparameters(), "optimizer": "AdamW wd 1e-4", "schedule": "one-cycle",
                            "encoder": f"frozen, from {init_path.name} ({digit.sha256[:12]})",
                            "train_sequences_per_epoch": train_count, "augmented_views": AUGMENTED_VIEWS},
        "metrics": metrics,
        "history": history.epochs,
        **provenance(device, started),
    }
    save_checkpoint(model, metadata, options.out)
    write_json(options.artefacts / "metrics.json", {"metrics": metrics, "history": history.epochs, "train_seconds": metadata["train_seconds"]})
    plot_curves(history.epochs, options.artefacts / "curves.png",
                f"SequenceNet (label noise {options.label_noise:.0%}, test accuracy {100 * metrics['test_accuracy']:.2f}%)")
    plot_confusion(confusion, LABELS, options.artefacts / "confusion.png", "SequenceNet, 10,000 test sequences")
    return options.out


def evaluate_command(checkpoint: Checkpoint, data_dir: str | None, device: torch.device) -> dict[str, Any]:
    """``python -m training evaluate``: accuracy on the fixed 10,000 test sequences."""
    split = load_split("test", data_dir)
    test = DigitData.from_split(split)
    sequences = test_sequences(split.labels)
    model = checkpoint.model
    metrics = sequence_metrics(read_sequences(model, embed(model.encoder, test.inputs, device)[0], sequences), sequences.labels)
    metrics.pop("confusion")
    return metrics
