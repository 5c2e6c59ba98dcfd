"""DigitSumNet: read a digit and add an integer to it, trained with cross-entropy + MSE.

The encoder and digit classifier start from a trained DigitNet and are fine-tuned jointly with
the linear adder. Integers are drawn from NUMBER_RANGE; because the adder is linear, the range
on which the rounded sum stays exact is measured on the test digits, far beyond that range.
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

from model.architectures import DigitSumNet, count_parameters
from model.checkpoint import Checkpoint, save_checkpoint
from model.devices import select_device
from model.preprocess import DEFAULT_CONFIG
from training.augment import AffineAugment
from training.data import DigitData, flip_labels, load_split, prepare
from training.digit import LABELS, load_init
from training.loop import Step, batches, optimise, seed_everything, train_epochs
from training.options import RunOptions
from training.plots import plot_curves
from training.provenance import provenance, write_json

VERSION = "1.3.0"
NUMBER_RANGE = (-100, 100)  # integers drawn for training and the headline test figure (inclusive)
SUM_LOSS_WEIGHT = 0.1
SHARPNESS = 8.0
TEST_SEED = 2_025
RANGE_CANDIDATES = (100, 300, 1_000, 3_000, 10_000, 30_000, 100_000, 1_000_000)
DEFAULT_INIT = Path("weights/digit.pt")


@torch.inference_mode()
def predict(model: DigitSumNet, inputs: torch.Tensor, numbers: torch.Tensor, device: torch.device,
            batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(digit logits [N, 10], predicted sums [N]) on the CPU."""
    model.eval()
    logits, sums = [], []
    for start in range(0, len(inputs), batch_size):
        lg, sm = model(inputs[start : start + batch_size].to(device), numbers[start : start + batch_size].to(device))
        logits.append(lg.float().cpu())
        sums.append(sm.float().cpu())
    return torch.cat(logits), torch.cat(sums)


def sum_metrics(model: DigitSumNet, test: DigitData, device: torch.device) -> dict[str, Any]:
    """Digit accuracy and exact-sum rate on the test digits, each paired with a random integer
    from the training range; the exact-sum rate over wider bands of integers; and the exact
    range: the widest +-R (from RANGE_CANDIDATES) at both ends of which the test digits are
    summed right as often as with 0, within 0.05 points.

    The adder is linear in the integer, so the sums for any n are the sums for 0 plus
    (adder weight on n) * n: one forward pass covers every band.
    """
    rng = np.random.default_rng(TEST_SEED)
    numbers = torch.as_tensor(rng.integers(NUMBER_RANGE[0], NUMBER_RANGE[1] + 1, len(test.labels)))
    logits, sums = predict(model, test.inputs, numbers, device)
    slope = float(model.adder.weight.detach()[0, 10])
    base = sums.double() - slope * numbers.double()  # the sums with n = 0

    def accuracy(n: torch.Tensor) -> float:
        return float((base + slope * n.double()).round().long().eq(test.labels + n).float().mean())

    at_zero = accuracy(torch.zeros_like(numbers))
    bands = {}
    for low, high in ((0, 9), *((-r, r) for r in RANGE_CANDIDATES)):
        bands[f"{low}..{high}"] = accuracy(torch.as_tensor(rng.integers(low, high + 1, len(test.labels))))
    exact = 0
    for bound in RANGE_CANDIDATES:
        if min(accuracy(torch.full_like(numbers, sign * bound)) for sign in (-1, 1)) < at_zero - 0.0005:
            break
        exact = bound
    digit_right = logits.argmax(1).eq(test.labels)
    sum_right = sums.round().long().eq(test.labels + numbers)
    return {
        "test_sum_accuracy": float(sum_right.float().mean()),
        "test_digit_accuracy": float(digit_right.float().mean()),
        "test_sum_mae": float((sums - (test.labels + numbers)).abs().mean()),
        "test_samples": len(test.labels),
        "test_number_range": list(NUMBER_RANGE),
        "sum_accuracy_at_zero": at_zero,
        "sum_accuracy_by_range": bands,
        "exact_range": [-exact, exact],
        "adder_weight_on_number": slope,
    }


def train(options: RunOptions) -> Path:
    started = time.time()
    generator = seed_everything(options.seed)
    device = select_device(options.device)
    init_path = options.init_from or DEFAULT_INIT
    digit = load_init(init_path, device)
    arguments = {**digit.metadata["arguments"], "sharpness": SHARPNESS}
    model = DigitSumNet(**arguments).to(device)
    model.encoder.load_state_dict(digit.model.encoder.state_dict())
    model.classifier.load_state_dict(digit.model.classifier.state_dict())

    data = prepare(options.data_dir, options.val_size, options.seed, options.limit)
    fit, val = data.fit, data.val
    fit_inputs = fit.inputs.to(device)
    fit_labels = torch.as_tensor(flip_labels(fit.labels.numpy(), options.label_noise, 10, options.seed)).to(device)
    val_numbers = torch.as_tensor(np.random.default_rng(options.seed + 1).integers(NUMBER_RANGE[0], NUMBER_RANGE[1] + 1, len(val.labels)))

    groups = [
        {"params": [*model.encoder.parameters(), *model.classifier.parameters()], "lr": options.lr / 10},
        {"params": model.adder.parameters(), "lr": options.lr * 50},
    ]
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    steps = -(-len(fit.labels) // options.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[options.lr / 10, options.lr * 50], total_steps=options.epochs * steps, pct_start=0.2)
    augment = AffineAugment()

    def epoch_batches(epoch: int) -> Iterator[torch.Tensor]:
        model.train()
        return batches(len(fit.labels), options.batch_size, generator)

    def step(index: torch.Tensor) -> Step:
        numbers = torch.randint(NUMBER_RANGE[0], NUMBER_RANGE[1] + 1, (len(index),), generator=generator).to(device)
        index = index.to(device)
        images = augment(fit_inputs[index], generator)
        labels = fit_labels[index]
        logits, sums = model(images, numbers)
        loss = F.cross_entropy(logits, labels) + SUM_LOSS_WEIGHT * F.mse_loss(sums, (labels + numbers).float())
        optimise(loss, optimizer, scheduler)
        return Step(loss.item(), len(index), int(sums.round().long().eq(labels + numbers).sum()))

    def validate(epoch: int) -> dict[str, float]:
        val_logits, val_sums = predict(model, val.inputs, val_numbers, device)
        truth = val.labels + val_numbers
        return {"val_loss": float(F.cross_entropy(val_logits, val.labels) + SUM_LOSS_WEIGHT * F.mse_loss(val_sums, truth.float())),
                "val_acc": float(val_sums.round().long().eq(truth).float().mean())}

    fitted = train_epochs(options.epochs, "digit-sum", steps, epoch_batches, step, validate, score=lambda r: -r["val_loss"],
                          keep=lambda: copy.deepcopy(model.state_dict()))
    history = fitted.history

    model.load_state_dict(fitted.kept)
    metrics = sum_metrics(model, DigitData.from_split(data.test), device)
    metrics["val_loss"] = -fitted.score
    metadata = {
        "name": "digit_sum",
        "task": "read a digit and add an integer to it",
        "architecture": "DigitSumNet",
        "arguments": arguments,
        "version": VERSION,
        "labels": LABELS,
        "preprocess": DEFAULT_CONFIG.to_dict(),
        "parameters": count_parameters(model),
        "dataset": data.record(),
        "hyperparameters": {**options.hyperparameters(), "optimizer": "AdamW (encoder lr/10, adder lr*50)",
                            "schedule": "one-cycle", "loss": f"cross-entropy + {SUM_LOSS_WEIGHT} * MSE(sum)",
                            "number_range": list(NUMBER_RANGE), "encoder": f"from {init_path.name} ({digit.sha256[:12]})",
                            "augmentation": repr(augment)},
        "metrics": metrics,
        "history": history.epochs,
        **provenance(device, started),
    }
    save_checkpoint(model, metadata, options.out)
    write_json(options.artefacts / "metrics.json", {"metrics": metrics, "history": history.epochs, "train_seconds": metadata["train_seconds"]})
    plot_curves(history.epochs, options.artefacts / "curves.png",
                f"DigitSumNet (acc = exact sum; test {100 * metrics['test_sum_accuracy']:.2f}%)")
    return options.out


def evaluate_command(checkpoint: Checkpoint, data_dir: str | None, device: torch.device) -> dict[str, Any]:
    """``python -m training evaluate``: the exact-sum rate on the test digits."""
    return sum_metrics(checkpoint.model, DigitData.from_split(load_split("test", data_dir)), device)
