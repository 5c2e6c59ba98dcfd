"""The weak-supervision study in the original's own setting: the whole CNN-LSTM learns from
sequence labels alone.

``SequenceNet`` (the shipped architecture) starts with a randomly initialised encoder and is
trained end to end on "does this sequence of 3-30 digits contain a 4?", with 0%, 20% and 40% of
the training labels flipped, once with cross-entropy and once with generalized cross-entropy.
No digit label is used for training; the checkpoint of each run (the epoch) is chosen by the
accuracy on 20,000 validation sequences labelled as noisily as its training ones. Afterwards,
what the encoder learnt is probed: a
linear classifier on its frozen embeddings, fitted with 1% of the digit labels, and the digit
images that most raise the "contains a 4" logit.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from model.architectures import SequenceNet
from training import digit, sequence
from training.data import DigitData, Prepared, Sequences, flip_labels, sample_sequences
from training.loop import Step, batches, optimise, seed_everything, train_epochs

RATES = (0.0, 0.2, 0.4)
LOSSES = ("bce", "gce")
EPOCHS = 3
SEQUENCES_PER_EPOCH = 20_000  # 3 epochs: 60,000 sequences, as many as the original's one epoch
BATCH_SIZE = 64
LR = 2e-3
VAL_SEQUENCES = 20_000  # at 40% flipped, model selection needs many: see train_run
PROBE_SHARE = 0.01  # digit labels the linear probe may use


@dataclass
class EndToEndRun:
    """One training run: its curves, the clean test accuracy of the chosen checkpoint, and the
    share of training labels that really were flipped."""

    rate: float
    loss: str
    seed: int
    history: list[dict[str, float]]
    kept_epoch: int
    test_accuracy: float
    flipped_share: float
    seconds: float


def new_model(seed: int, device: torch.device) -> SequenceNet:
    """The shipped architecture with every weight drawn at random (``seed``): no digit model's
    encoder, no pretraining."""
    torch.manual_seed(seed)
    return SequenceNet(**digit.ARGUMENTS, hidden=sequence.HIDDEN).to(device, memory_format=torch.channels_last)


def _batch(inputs: torch.Tensor, sequences: Sequences, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    offsets = sequences.offsets()
    digits = np.concatenate([sequences.indices[offsets[i] : offsets[i + 1]] for i in index])
    return inputs[torch.as_tensor(digits)], torch.as_tensor(sequences.lengths[index])


def embeddings(model: SequenceNet, inputs: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The encoder's embeddings of clean images (``sequence.embed``, eval mode)."""
    return sequence.embed(model.encoder, inputs, device)[0]


def train_run(data: Prepared, rate: float, loss_name: str, seed: int, device: torch.device, epochs: int = EPOCHS,
              sequences_per_epoch: int = SEQUENCES_PER_EPOCH, max_batches: int | None = None) -> tuple[EndToEndRun, SequenceNet]:
    """Train one CNN-LSTM from random weights on (possibly flipped) sequence labels.
    ``max_batches`` cuts every epoch short (smoke runs)."""
    started = time.time()
    generator = seed_everything(seed)
    model = new_model(seed, device)
    fit_inputs, fit_digits = data.fit.inputs.to(device), data.fit.labels.numpy()
    val_sequences = sample_sequences(data.val.labels.numpy(), VAL_SEQUENCES, seed=seed + 1)
    val_noisy = torch.as_tensor(flip_labels(val_sequences.labels, rate, 2, seed + 2)).float()
    val_clean = torch.as_tensor(val_sequences.labels).float()
    steps = -(-sequences_per_epoch // BATCH_SIZE)
    if max_batches:
        steps = min(steps, max_batches)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=epochs * steps, pct_start=0.15)
    flips = {"flipped": 0, "seen": 0}

    def epoch_batches(epoch: int) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor, np.ndarray]]:
        sequences = sample_sequences(fit_digits, sequences_per_epoch, seed=seed * 1000 + epoch)
        targets_all = flip_labels(sequences.labels, rate, 2, seed * 1000 + epoch)
        model.train()
        order = batches(len(sequences), BATCH_SIZE, generator)
        for _ in range(steps):
            index = next(order).sort().values.numpy()
            images, lengths = _batch(fit_inputs, sequences, index)
            yield index, images, lengths, targets_all[index] != sequences.labels[index], targets_all[index]

    def step(batch: tuple) -> Step:
        index, images, lengths, flipped, targets = batch
        flips["flipped"] += int(flipped.sum())
        flips["seen"] += len(index)
        targets = torch.as_tensor(targets, device=device).float()
        logits = model(images.contiguous(memory_format=torch.channels_last), lengths)
        loss = sequence.sequence_loss(loss_name, logits, targets)
        optimise(loss, optimizer, scheduler)
        return Step(loss.item(), len(index), int((logits > 0).float().eq(targets).sum()))

    def validate(epoch: int) -> dict[str, float]:
        probabilities = sequence.read_sequences(model, embeddings(model, data.val.inputs, device), val_sequences)
        predicted = (probabilities >= 0.5).float()
        return {"val_acc": float((predicted == val_clean).float().mean()),
                "val_acc_noisy": float((predicted == val_noisy).float().mean()),
                "val_loss_noisy": float(F.binary_cross_entropy(probabilities.clamp(1e-6, 1 - 1e-6), val_noisy))}

    # No clean labels: the checkpoint is chosen by the accuracy on the noisy validation labels.
    # With symmetric flips at rate r < 0.5 its expectation is r + (1 - 2r) x the clean accuracy,
    # so it ranks checkpoints as the clean accuracy does, whatever the loss (Chen et al., "Robustness
    # of Accuracy Metric and its Inspirations in Learning with Noisy Labels", AAAI 2021). The
    # noisy log-loss does not: it punishes the confident answers a noise-robust loss is meant to
    # give. 20,000 sequences keep the shrunken differences above their own noise.
    fitted = train_epochs(epochs, f"end-to-end {rate:.0%} {loss_name}", steps, epoch_batches, step, validate,
                          score=lambda r: r["val_acc_noisy"], keep=lambda: copy.deepcopy(model.state_dict()))
    model.load_state_dict(fitted.kept)
    test = DigitData.from_split(data.test)
    test_sequences = sequence.test_sequences(data.test.labels)
    probabilities = sequence.read_sequences(model, embeddings(model, test.inputs, device), test_sequences)
    accuracy = float(((probabilities >= 0.5).numpy() == test_sequences.labels).mean())
    run = EndToEndRun(rate, loss_name, seed, fitted.history.epochs, fitted.epoch, accuracy, flips["flipped"] / max(flips["seen"], 1),
                      time.time() - started)
    return run, model


def probe(model: SequenceNet, data: Prepared, seed: int, device: torch.device, share: float = PROBE_SHARE) -> float:
    """Digit accuracy on the test split of a linear classifier (multinomial logistic regression)
    on the frozen encoder's embeddings, fitted on ``share`` of the fit digits' labels."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(data.fit.labels), max(10, round(share * len(data.fit.labels))), replace=False)
    train_x = embeddings(model, data.fit.inputs[chosen], device).float()
    train_y = data.fit.labels[chosen].to(device)
    test = DigitData.from_split(data.test)
    test_x = embeddings(model, test.inputs, device).float()
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    linear = torch.nn.Linear(train_x.shape[1], 10).to(device)
    optimizer = torch.optim.LBFGS(linear.parameters(), lr=1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(train_x), train_y) + 1e-3 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        return float(linear(test_x).argmax(1).cpu().eq(test.labels).float().mean())


@torch.inference_mode()
def four_evidence(model: SequenceNet, data: Prepared, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Each test digit's "contains a 4" logit when read as a sequence of one digit, and its label."""
    test = DigitData.from_split(data.test)
    flat = embeddings(model, test.inputs, device)
    logits = model.read(flat.unsqueeze(1), torch.ones(len(flat), dtype=torch.int64))
    return logits.float().cpu().numpy(), test.labels.numpy()
