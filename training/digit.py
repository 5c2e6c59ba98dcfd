"""DigitNet: train on MNIST with augmentation and a one-cycle schedule, calibrate, evaluate."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from model.architectures import DigitNet, count_parameters
from model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from model.devices import select_device
from model.preprocess import DEFAULT_CONFIG
from training.augment import AffineAugment
from training.data import DigitData, flip_labels, load_split, prepare
from training.engine import (
    History,
    batches,
    expected_calibration_error,
    fit_temperature,
    predict_logits,
    progress,
    provenance,
    seed_everything,
    write_json,
)
from training.options import RunOptions
from training.plots import confusion_matrix, plot_confusion, plot_curves

ARGUMENTS: dict[str, Any] = {"channels": [32, 64], "features": 256, "dropout": 0.25}
LABELS = [str(d) for d in range(10)]
VERSION = "1.0.0"


def test_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Accuracy, error, NLL, calibration error and confusion matrix of calibrated logits."""
    probabilities = logits.softmax(dim=1)
    predicted = probabilities.argmax(dim=1)
    accuracy = float(predicted.eq(labels).float().mean())
    return {
        "test_accuracy": accuracy,
        "test_error": 1 - accuracy,
        "test_nll": float(F.cross_entropy(logits, labels)),
        "test_ece": expected_calibration_error(probabilities, labels),
        "test_samples": len(labels),
        "confusion": confusion_matrix(labels.numpy(), predicted.numpy(), 10).tolist(),
    }


def train(options: RunOptions) -> Path:
    started = time.time()
    generator = seed_everything(options.seed)
    device = select_device(options.device)
    data = prepare(options.data_dir, options.val_size, options.seed, options.limit)
    fit, val = data.fit, data.val
    fit_inputs = fit.inputs.to(device)
    fit_labels = torch.as_tensor(flip_labels(fit.labels.numpy(), options.label_noise, 10, options.seed)).to(device)

    model = DigitNet(**ARGUMENTS).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=options.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = -(-len(fit.labels) // options.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=options.lr, total_steps=options.epochs * steps, pct_start=0.2)
    augment = AffineAugment()
    # An exponential moving average of the weights (and batch-norm statistics) is what gets
    # validated and shipped: it is consistently a little more accurate than the raw weights.
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(options.ema_decay), use_buffers=True)
    history, best = History(), (-1.0, None)

    for epoch in range(1, options.epochs + 1):
        model.train()
        seen, loss_sum, correct = 0, 0.0, 0
        bar = progress(batches(len(fit.labels), options.batch_size, generator), steps, f"digit {epoch}/{options.epochs}")
        for index in bar:
            index = index.to(device)
            images = augment(fit_inputs[index], generator).contiguous(memory_format=torch.channels_last)
            targets = fit_labels[index]
            logits = model(images)
            loss = F.cross_entropy(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            ema.update_parameters(model)
            seen += len(index)
            loss_sum += loss.item() * len(index)
            correct += int(logits.argmax(1).eq(targets).sum())
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
        val_logits = predict_logits(model, val.inputs, device)
        ema_logits = predict_logits(ema.module, val.inputs, device)
        val_acc = float(ema_logits.argmax(1).eq(val.labels).float().mean())
        history.add(epoch=epoch, train_loss=loss_sum / seen, train_acc=correct / seen,
                    val_loss=float(F.cross_entropy(val_logits, val.labels)),
                    val_acc=float(val_logits.argmax(1).eq(val.labels).float().mean()),
                    val_acc_ema=val_acc)
        if val_acc >= best[0]:
            best = (val_acc, copy.deepcopy(ema.module.state_dict()))

    model.load_state_dict(best[1])
    raw_val = predict_logits(model, val.inputs, device)
    temperature = fit_temperature(raw_val, val.labels)
    model.temperature.fill_(temperature)

    test = DigitData.from_split(data.test)
    test_logits = predict_logits(model, test.inputs, device)
    metrics = test_metrics(test_logits, test.labels)
    uncalibrated = expected_calibration_error((test_logits * temperature).softmax(1), test.labels)
    confusion = np.array(metrics.pop("confusion"))
    metrics.update(test_ece_uncalibrated=uncalibrated, temperature=temperature, val_accuracy=best[0])

    metadata = {
        "name": "digit",
        "task": "classify one handwritten digit",
        "architecture": "DigitNet",
        "arguments": ARGUMENTS,
        "version": VERSION,
        "labels": LABELS,
        "preprocess": DEFAULT_CONFIG.to_dict(),
        "parameters": count_parameters(model),
        "dataset": data.record(),
        "hyperparameters": {**options.hyperparameters(), "optimizer": "SGD nesterov 0.9, wd 5e-4",
                            "schedule": "one-cycle", "augmentation": repr(augment),
                            "weights": f"exponential moving average, decay {options.ema_decay}"},
        "metrics": metrics,
        "history": history.epochs,
        **provenance(device, started),
    }
    save_checkpoint(model, metadata, options.out)
    write_json(options.artefacts / "metrics.json", {"metrics": metrics, "history": history.epochs, "train_seconds": metadata["train_seconds"]})
    plot_curves(history.epochs, options.artefacts / "curves.png", f"DigitNet on MNIST (test accuracy {100 * metrics['test_accuracy']:.2f}%)")
    plot_confusion(confusion, LABELS, options.artefacts / "confusion.png", "DigitNet, MNIST test split")
    return options.out


def evaluate_command(checkpoint: Checkpoint, data_dir: str | None, device: torch.device) -> dict[str, Any]:
    """``python -m training evaluate digit``: recompute the test metrics of a checkpoint."""
    test = DigitData.from_split(load_split("test", data_dir))
    metrics = test_metrics(predict_logits(checkpoint.model, test.inputs, device), test.labels)
    metrics.pop("confusion")
    return metrics


def load_init(path: Path, device: torch.device) -> Checkpoint:
    """The trained DigitNet whose encoder starts the sequence and digit-sum models."""
    checkpoint = load_checkpoint(path, map_location=device)
    if checkpoint.metadata["architecture"] != "DigitNet":
        raise ValueError(f"--init-from must be a DigitNet checkpoint, {path} is {checkpoint.metadata['architecture']}")
    return checkpoint
