"""Training a single-image classifier (the digit and the garment models): one recipe, two tasks.

SGD with Nesterov momentum and a one-cycle schedule, batched augmentation, an exponential moving
average of the weights chosen on the validation split, then temperature scaling fitted on that
split, and test metrics from the test split recorded in the checkpoint.

With ``--teacher`` the run learns from another checkpoint's outputs as well as from the labels
(knowledge distillation, Hinton et al. 2015): typically an ensemble of this recipe, whose
accuracy one network of one forward pass can then approach. The teacher reads each augmented
batch exactly as the student does (a consistent teacher, Beyer et al. 2022).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from model.architectures import build_model, count_parameters
from model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from model.inference import for_inference
from training import distributed
from training.augment import Swap
from training.calibration import expected_calibration_error, fit_temperature
from training.data import Dataset, DigitData, Prepared, flip_labels, load_split, prepare
from training.loop import Step, batches, optimise, predict_logits, seed_everything, train_epochs
from training.options import RunOptions
from training.plots import confusion_matrix, plot_confusion, plot_curves
from training.provenance import provenance, write_json

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

# Softening of both distributions in the distillation loss: at 2, a teacher's second and third
# choices (a 7 that could be a 1) carry weight, while its first still leads.
DISTILL_TEMPERATURE = 2.0


@dataclass(frozen=True)
class ClassifierTask:
    """What differs between the classifiers: data set, network, augmentation, identity."""

    name: str  # the checkpoint's name, e.g. "digit"
    description: str
    dataset: Dataset
    architecture: str
    arguments: dict[str, Any]
    version: str
    augment: Augment
    label_smoothing: float = 0.0
    swaps: tuple[Swap, ...] = ()  # digits drawn once more (framed scans, European 1s), swapped into batches

    @property
    def title(self) -> str:
        return f"{self.architecture} on {self.dataset.name}"

    def train(self, options: RunOptions) -> Path:
        """``python -m training train <name>``."""
        return train_classifier(options, self)

    def evaluate_command(self, checkpoint: Checkpoint, data_dir: str | None, device: torch.device) -> dict[str, Any]:
        """``python -m training evaluate``: recompute the test metrics of this task's checkpoint."""
        return evaluate_classifier(checkpoint, data_dir, device, self.dataset)


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
        "confusion": confusion_matrix(labels.numpy(), predicted.numpy(), logits.shape[1]).tolist(),
    }


def held_out_split(metadata: dict[str, Any]) -> tuple[int, int]:
    """(split seed, validation size) a classifier checkpoint held out; runs made before
    ``--split-seed`` split by ``--seed``."""
    hyper = metadata["hyperparameters"]
    return int(hyper["split_seed"] if "split_seed" in hyper else hyper["seed"]), int(hyper["val_size"])


def load_teacher(path: Path, task: ClassifierTask, options: RunOptions, device: torch.device) -> Checkpoint:
    """The checkpoint a run distils, refused if it reads other classes or other inputs, or held out
    another validation split (it would have trained on this run's validation images, and the
    student's choice of epoch would be made on digits its teacher had learnt)."""
    teacher = load_checkpoint(path, map_location=device)
    if teacher.metadata["labels"] != list(task.dataset.labels) or teacher.metadata["preprocess"] != task.dataset.preprocess.to_dict():
        raise ValueError(f"--teacher {path} is a {teacher.metadata['name']} model, not one of this task's classes and inputs")
    if held_out_split(teacher.metadata) != (options.split_seed, options.val_size):
        raise ValueError(f"--teacher {path} held out another validation split than this run's "
                         f"(--split-seed {options.split_seed}, --val-size {options.val_size})")
    return teacher


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, weight: float,
                      label_smoothing: float = 0.0) -> torch.Tensor:
    """Summed over the batch: ``weight`` times the KL divergence from the teacher's softened
    distribution to the student's (scaled by the temperature squared, so that its gradients keep
    their size whatever the temperature), plus the rest times the labels' cross-entropy."""
    t = DISTILL_TEMPERATURE
    soft = F.kl_div((logits / t).log_softmax(1), (teacher_logits.float() / t).log_softmax(1), log_target=True, reduction="sum")
    hard = F.cross_entropy(logits, targets, label_smoothing=label_smoothing, reduction="sum")
    return weight * t * t * soft + (1 - weight) * hard


def distillation_record(teacher: Checkpoint, weight: float) -> dict[str, Any]:
    """What a distilled checkpoint records of how it was taught: which teacher (by checksum), how much."""
    return {"teacher": teacher.metadata["architecture"], "teacher_version": teacher.metadata["version"],
            "teacher_sha256": teacher.sha256, "teacher_test_accuracy": teacher.metadata["metrics"]["test_accuracy"],
            "weight": weight, "temperature": DISTILL_TEMPERATURE}


def calibrate_and_test(model: torch.nn.Module, data: Prepared, device: torch.device) -> tuple[dict[str, Any], np.ndarray]:
    """Fit the model's ``temperature`` on the validation split, then score it on the test split:
    the test metrics (with the validation accuracy, the ECE before calibration and the
    temperature) and the confusion matrix."""
    val_logits = predict_logits(model, data.val.inputs, device)
    temperature = fit_temperature(val_logits, data.val.labels)
    model.temperature.fill_(temperature)
    test = data.test_data()
    test_logits = predict_logits(model, test.inputs, device)
    metrics = test_metrics(test_logits, test.labels)
    confusion = np.array(metrics.pop("confusion"))
    uncalibrated = expected_calibration_error((test_logits * temperature).softmax(1), test.labels)
    metrics.update(test_ece_uncalibrated=uncalibrated, temperature=temperature,
                   val_accuracy=float(val_logits.argmax(1).eq(data.val.labels).float().mean()))
    return metrics, confusion


def train_classifier(options: RunOptions, task: ClassifierTask) -> Path:
    """Train, calibrate, test and save one classifier; under torchrun, with every process taking
    its share of each batch (``training.distributed``) and rank 0 alone writing."""
    started = time.time()
    generator = seed_everything(options.seed)
    world, device = distributed.join(options.device)
    data = prepare(options.data_dir, options.val_size, options.split_seed, options.limit, task.dataset)
    fit, val = data.fit, data.val
    fit_inputs = fit.inputs.to(device)
    classes = len(task.dataset.labels)
    fit_labels = torch.as_tensor(flip_labels(fit.labels.numpy(), options.label_noise, classes, options.seed)).to(device)
    fit_raw = data.train.images[data.fit_indices]
    drawn = [tuple(t.to(device) for t in swap.prepare(fit_raw, fit.labels.numpy(), options.seed, task.dataset.preprocess))
             for swap in task.swaps]

    teacher = load_teacher(options.teacher, task, options, device) if options.teacher else None
    teach = for_inference(teacher.model, device) if teacher else None  # eval mode, no gradients, serving speed

    model = build_model(task.architecture, task.arguments).to(device, memory_format=torch.channels_last)
    trained = world.wrap(model, device)  # what the steps run: the model, or its DDP wrapper
    optimizer = torch.optim.SGD(model.parameters(), lr=options.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = -(-len(fit.labels) // options.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=options.lr, total_steps=options.epochs * steps, pct_start=0.2)
    # An exponential moving average of the weights (and batch-norm statistics) is what gets
    # validated and shipped: it is consistently a little more accurate than the raw weights.
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(options.ema_decay), use_buffers=True)

    def epoch_batches(epoch: int) -> Iterator[torch.Tensor]:
        model.train()
        return batches(len(fit.labels), options.batch_size, generator)

    examples = [0]  # trained on by this process

    def step(index: torch.Tensor) -> Step:
        index = index.to(device)
        # The whole global batch is augmented, so that the random draws are the same for any
        # number of processes; each then trains on its share.
        inputs = fit_inputs[index]
        for swap, (drawings, usable) in zip(task.swaps, drawn, strict=True):
            inputs = swap.mix(inputs, drawings[index], usable[index], generator)
        images = world.shard(task.augment(inputs, generator)).contiguous(memory_format=torch.channels_last)
        targets = world.shard(fit_labels[index])
        logits = trained(images)
        if teach is None:
            summed = F.cross_entropy(logits, targets, label_smoothing=task.label_smoothing, reduction="sum")
        else:
            with torch.no_grad():
                teacher_logits = teach(images)
            summed = distillation_loss(logits, teacher_logits, targets, options.distill_weight, task.label_smoothing)
        loss = world.mean_loss(summed, len(index))
        optimise(loss, optimizer, scheduler)
        ema.update_parameters(model)
        examples[0] += len(targets)
        loss_sum, count, correct = world.total(summed.item(), len(targets), int(logits.argmax(1).eq(targets).sum()))
        return Step(loss_sum / count, int(count), int(correct))

    def validate(epoch: int) -> dict[str, float]:
        val_logits = predict_logits(model, val.inputs, device)
        ema_logits = predict_logits(ema.module, val.inputs, device)
        return {"val_loss": float(F.cross_entropy(val_logits, val.labels)),
                "val_acc": float(val_logits.argmax(1).eq(val.labels).float().mean()),
                "val_acc_ema": float(ema_logits.argmax(1).eq(val.labels).float().mean())}

    fitted = train_epochs(options.epochs, task.name, steps, epoch_batches, step, validate, score=lambda r: r["val_acc_ema"],
                 keep=lambda: copy.deepcopy(ema.module.state_dict()), show=world.main)
    history = fitted.history
    per_process = world.gather(examples[0])
    if not world.main:
        world.barrier()  # until rank 0 has written the checkpoint
        distributed.leave(world)
        return options.out

    model.load_state_dict(fitted.kept)
    metrics, confusion = calibrate_and_test(model, data, device)  # its validation accuracy is fitted.score

    labels = list(task.dataset.labels)
    metadata = {
        "name": task.name,
        "task": task.description,
        "architecture": task.architecture,
        "arguments": task.arguments,
        "version": task.version,
        "labels": labels,
        "preprocess": task.dataset.preprocess.to_dict(),
        "parameters": count_parameters(model),
        "dataset": data.record(),
        "hyperparameters": {**options.hyperparameters(), "optimizer": "SGD nesterov 0.9, wd 5e-4",
                            "schedule": "one-cycle", "augmentation": repr(task.augment),
                            **{swap.key: repr(swap) for swap in task.swaps},
                            "label_smoothing": task.label_smoothing,
                            **({"distillation": distillation_record(teacher, options.distill_weight)} if teacher else {}),
                            "weights": f"exponential moving average, decay {options.ema_decay}",
                            "processes": world.size, "examples_per_process": per_process},
        "metrics": metrics,
        "history": history.epochs,
        **provenance(device, started),
    }
    save_checkpoint(model, metadata, options.out)
    write_json(options.artefacts / "metrics.json", {"metrics": metrics, "history": history.epochs, "train_seconds": metadata["train_seconds"]})
    plot_curves(history.epochs, options.artefacts / "curves.png", f"{task.title} (test accuracy {100 * metrics['test_accuracy']:.2f}%)")
    plot_confusion(confusion, labels, options.artefacts / "confusion.png", f"{task.architecture}, {task.dataset.name} test split")
    world.barrier()
    distributed.leave(world)
    return options.out


def evaluate_classifier(checkpoint: Checkpoint, data_dir: str | None, device: torch.device, dataset: Dataset) -> dict[str, Any]:
    """``python -m training evaluate``: recompute the test metrics of a classifier checkpoint."""
    test = DigitData.from_split(load_split("test", data_dir, dataset), config=checkpoint.preprocess)
    metrics = test_metrics(predict_logits(checkpoint.model, test.inputs, device), test.labels)
    metrics.pop("confusion")
    return metrics
