"""The LeNet-style study's error gallery: every test digit the digit model gets wrong.

A grid of the misclassified MNIST test images (as the data set has them, white on black) with true
and predicted label and the model's confidence, and the confusion pairs that dominate.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from training.plots import plt, save_figure  # plt: headless pyplot
from training.studies.common import StudyOptions, markdown_table, test_logits


def plot_gallery(images: np.ndarray, titles: list[str], path: Path, columns: int = 10) -> None:
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.45 * columns, 1.75 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, title in zip(axes.ravel(), images, titles):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(title, fontsize=8)
    fig.suptitle("Digit model errors on the MNIST test split (true -> predicted, confidence)", fontsize=10)
    save_figure(fig, path)


def run(options: StudyOptions) -> Path:
    result = test_logits(options)
    probabilities = result.logits.softmax(dim=1)
    confidence, predicted = probabilities.max(dim=1)
    wrong = np.flatnonzero((predicted != result.labels).numpy())
    order = wrong[np.argsort(-confidence[wrong].numpy(), kind="stable")]  # most confident errors first
    truth, guess = result.labels.numpy(), predicted.numpy()
    titles = [f"#{i}: {truth[i]} -> {guess[i]}\n{confidence[i]:.2f}" for i in order]
    figure = options.out / "error-gallery.png"
    plot_gallery(result.split.images[order], titles, figure)

    pairs = Counter((int(truth[i]), int(guess[i])) for i in wrong)
    runner_up = probabilities[order].topk(2, dim=1)
    errors_rows = [[int(i), int(truth[i]), int(guess[i]), f"{confidence[i]:.3f}",
                    f"{float(probabilities[i, truth[i]]):.3f}", "yes" if int(runner_up.indices[k, 1]) == truth[i] else "no"]
                   for k, i in enumerate(order)]
    accuracy = 1 - len(wrong) / len(truth)
    confident = int((confidence[wrong] > 0.9).sum())
    report = options.out / "error-gallery.md"
    report.write_text(f"""# Error gallery: the digit model's mistakes on the MNIST test split

Command: `python -m training study error-gallery --data-dir <MNIST>` (checkpoint `{options.checkpoint}`,
sha256 `{result.checkpoint.sha256[:16]}...`, model {result.checkpoint.metadata['name']}:{result.checkpoint.metadata['version']}).

The model reads {len(truth) - len(wrong):,} of the {len(truth):,} test digits right: **{100 * accuracy:.2f}% accuracy,
{100 * (1 - accuracy):.2f}% error ({len(wrong)} digits)**; the original LeNet-style study reported 0.40-0.45% error.
{confident} of the {len(wrong)} errors are made with more than 90% confidence; for
{sum(1 for row in errors_rows if row[-1] == "yes")} of them the true digit is the model's second choice.

![every misclassified test digit]({figure.name})

Most confident errors first; the number is the image's index in the test split.

## Confusion pairs

{markdown_table(["true", "predicted", "errors"], [[t, p, n] for (t, p), n in pairs.most_common()])}

## Every error

{markdown_table(["test index", "true", "predicted", "confidence", "P(true)", "true is 2nd choice"], errors_rows)}
""")
    return report
