"""PNG figures a person looks at after a run: training curves and a confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: no display on training machines or in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_figure(fig: plt.Figure, path: Path) -> None:
    """Lay out, write as PNG (creating the folder) and free a finished figure."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _history_panels(epochs: Sequence[dict[str, float]], losses: Sequence[tuple[str, str, str]],
                    accuracies: Sequence[tuple[str, str, str]]) -> tuple[plt.Figure, plt.Axes, plt.Axes]:
    """A loss panel and an accuracy panel (in %) side by side, one line per (key, label, style)
    present in the history."""
    x = [e["epoch"] for e in epochs]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, series, scale in ((loss_ax, losses, 1), (acc_ax, accuracies, 100)):
        for key, label, style in series:
            if key in epochs[0]:
                ax.plot(x, [scale * e[key] for e in epochs], style, label=label)
        ax.grid(alpha=0.3)
        ax.legend()
    return fig, loss_ax, acc_ax


def plot_curves(epochs: Sequence[dict[str, float]], path: Path, title: str) -> None:
    """Loss and accuracy per epoch, train against validation, side by side."""
    named = [(key, key.replace("_", " "), style) for key, style in
             (("train_loss", "-o"), ("val_loss", "-s"), ("train_acc", "-o"), ("val_acc", "-s"), ("val_acc_ema", "-^"))]
    fig, loss_ax, acc_ax = _history_panels(epochs, named[:2], named[2:])
    top = [100 * e[k] for e in epochs for k in ("train_acc", "val_acc") if k in e]
    acc_ax.set_ylim(max(min(top) - 1, 0), 100.05)  # the region that matters, not an early outlier
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    fig.suptitle(title)
    save_figure(fig, path)


def plot_confusion(matrix: np.ndarray, labels: Sequence[str], path: Path, title: str) -> None:
    """Confusion matrix (rows: truth, columns: prediction) with counts; off-diagonal errors stand
    out because the colour scale is logarithmic."""
    fig, ax = plt.subplots(figsize=(7, 6))
    shown = np.log10(matrix + 1)
    image = ax.imshow(shown, cmap="Blues")
    # Class names (Fashion-MNIST's) would overlap side by side: slant them.
    slanted = max(len(label) for label in labels) > 2
    ax.set_xticks(range(len(labels)), labels, rotation=40 if slanted else 0, ha="right" if slanted else "center")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    threshold = shown.max() / 2
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            if matrix[i, j]:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if shown[i, j] > threshold else "black")
    fig.colorbar(image, ax=ax, label="log10(count + 1)")
    save_figure(fig, path)


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix


def plot_reading_curves(epochs: Sequence[dict[str, float]], path: Path, title: str) -> None:
    """A strip reader's run: training loss, and the share of validation strips read exactly
    (training style, and the unseen dev style) per epoch."""
    fig, loss_ax, acc_ax = _history_panels(epochs, [("train_loss", "train CTC loss", "-o")],
                                           [("val_acc", "validation, training style", "-s"),
                                            ("val_acc_dev", "validation, unseen dev style", "-s")])
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss", yscale="log")
    acc_ax.set(xlabel="epoch", ylabel="strips read exactly (%)", title="strips read exactly")
    fig.suptitle(title)
    save_figure(fig, path)
