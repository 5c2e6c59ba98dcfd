"""The CNN-LSTM study's weak supervision: the sequence model trained on flipped labels.

The sequence model ("does this sequence of 3-30 digits contain a 4?") is trained with 0%, 20% and
40% of its training labels flipped, once with plain binary cross-entropy and once with a
noise-robust loss (generalized cross-entropy), everything else equal. Per run: the clean
validation accuracy after every epoch (the original study's curves) and the clean test accuracy
on the same 10,000 test sequences as the shipped model. With noise, the checkpoint of each run is
chosen on equally noisy validation labels, as a user without clean labels would have to.

As in the shipped model, the digit encoder is the digit model's, frozen: what is trained on the
noisy labels is the LSTM and its head. The original trained the whole CNN-LSTM from sequence
labels alone: that setting is ``--setting end-to-end`` (``training.studies.end_to_end``), the
second part of the report.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from model.checkpoint import load_checkpoint
from training import sequence
from training.options import RunOptions
from training.tasks import TASKS
from training.plots import plt, save_figure
from training.studies import end_to_end_report
from training.studies.common import FROZEN_PART, StudyOptions, markdown_table, write_part

RATES = (0.0, 0.2, 0.4)
LOSSES = {"bce": "cross-entropy", "gce": f"generalized cross-entropy (q = {sequence.GCE_Q})"}
TARGET = 0.988
EPOCHS = 3  # per run, unless --epochs says otherwise


def reading(runs: dict[tuple[float, str], dict]) -> str:
    """What the table says at the hardest rate, with its uncertainty, and why noise costs so
    little in this setup."""
    plain, robust = (runs[(max(RATES), loss)]["test_accuracy"] for loss in LOSSES)
    error = math.sqrt(plain * (1 - plain) / 10_000)
    return (f"At {max(RATES):.0%} flipped, cross-entropy reached {100 * plain:.2f}% and generalized cross-entropy "
            f"{100 * robust:.2f}% on the clean test sequences ({100 * (robust - plain):+.2f} points); with 10,000 test "
            f"sequences one standard error is about {100 * error:.2f} points. Noise costs little here, for two "
            "reasons that belong to this setup rather than to either loss: the digit encoder learnt from clean digit "
            "labels and stays frozen, so only the LSTM and its head see the noisy labels; and every epoch draws new "
            "sequences with new flips, so no flipped label is seen twice to be memorised, and with symmetric flips "
            "below 50% the likeliest label of every sequence is still its true one. The original study's setting, "
            "where the CNN too learns from the noisy sequence labels, is where a robust loss is expected to matter; "
            "it is the end-to-end part below.")


def run(options: StudyOptions) -> Path:
    """``--setting frozen-encoder`` (the digit model's encoder, frozen) or ``end-to-end`` (the
    original's: the whole CNN-LSTM from random weights); each writes its own part of the report."""
    if options.setting == "end-to-end":
        return end_to_end_report.run(options)
    if options.setting != "frozen-encoder":
        raise ValueError(f"unknown setting {options.setting!r}: use 'frozen-encoder' or 'end-to-end'")
    return run_frozen(options)


def run_frozen(options: StudyOptions) -> Path:
    sequence_task = TASKS["sequence"]
    epochs = options.epochs or EPOCHS
    runs: dict[tuple[float, str], dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for loss in LOSSES:
            for rate in RATES:
                print(f"label-noise study: {rate:.0%} flipped, {loss}", flush=True)
                out = Path(scratch) / f"sequence-{loss}-{int(rate * 100)}.pt"
                sequence.train(RunOptions(out=out, data_dir=options.data_dir, epochs=epochs, seed=options.seed,
                                          device=options.device, label_noise=rate, loss=loss,
                                          batch_size=sequence_task.batch_size, lr=sequence_task.lr,
                                          limit=options.limit))
                metadata = load_checkpoint(out).metadata
                runs[(rate, loss)] = {"history": metadata["history"], "test_accuracy": metadata["metrics"]["test_accuracy"],
                                      "sequences": metadata["hyperparameters"]["train_sequences_per_epoch"],
                                      "train_seconds": metadata["train_seconds"], "code_version": metadata["code_version"]}

    figure = options.out / "label-noise.png"
    fig, axes = plt.subplots(1, len(LOSSES), figsize=(6 * len(LOSSES), 4.2), sharey=True, squeeze=False)
    for ax, (loss, title) in zip(axes[0], LOSSES.items()):
        for rate in RATES:
            history = runs[(rate, loss)]["history"]
            ax.plot([h["epoch"] for h in history], [100 * h["val_acc"] for h in history], "-o", label=f"{rate:.0%} flipped")
        ax.axhline(100 * TARGET, color="gray", linestyle="--", linewidth=1, label=f"target {100 * TARGET:.1f}%")
        ax.set(title=title, xlabel="epoch", ylabel="clean validation accuracy (%)", xticks=range(1, epochs + 1))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Sequence model (contains a 4?) trained on flipped labels")
    save_figure(fig, figure)

    rows = [[f"{rate:.0%}"] + [f"{100 * runs[(rate, loss)]['test_accuracy']:.2f}%" for loss in LOSSES] for rate in RATES]
    seconds = sum(r["train_seconds"] for r in runs.values())
    versions = sorted({r["code_version"] for r in runs.values()})
    report = options.out / "label-noise.md"
    write_part(report, FROZEN_PART, f"""# Weak supervision: the sequence model on flipped labels

Command: `python -m training study label-noise --setting frozen-encoder --data-dir <MNIST> --epochs {epochs}`
(seed {options.seed}; {len(runs)} training runs, {seconds:.0f} s in all; code {", ".join(versions)}).

{__doc__.split(chr(10) + chr(10), 1)[1].strip()}

Each run: {epochs} epochs of {runs[(0.0, "bce")]["sequences"]:,} fresh training sequences (lengths N(10, 3) clipped to 3..30),
AdamW, one-cycle learning rate peaking at 2e-3; the shipped model has 8 epochs (its figures: `weights/README.md`).

## Clean test accuracy (10,000 test sequences)

{markdown_table(["labels flipped"] + list(LOSSES.values()), rows)}

Target at 40% flipped: {100 * TARGET:.1f}% (the original study's CNN-LSTM reached 98.8% with clean labels).

{reading(runs)}

![clean validation accuracy by epoch]({figure.name})

## Clean validation accuracy by epoch

{markdown_table(["loss", "flipped"] + [f"epoch {h['epoch']:.0f}" for h in runs[(0.0, 'bce')]['history']],
                [[loss, f"{rate:.0%}"] + [f"{100 * h['val_acc']:.2f}%" for h in runs[(rate, loss)]['history']]
                 for loss in LOSSES for rate in RATES])}
""")
    return report
