"""``python -m training study label-noise --setting end-to-end``: run the end-to-end study
(``training.studies.end_to_end``) and write its part of ``docs/studies/label-noise.md``.

Each run's figures are kept in ``label-noise-end-to-end.json`` beside the report, and a run
already there (same rate, loss, seed, epochs and sequences) is not trained again: the study can
be run in pieces (``--seeds 1`` first, then ``--seeds 3``, or ``--rates``/``--losses`` for some
configurations only); the report shows every run stored.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

from model.devices import select_device
from training.data import prepare
from training.plots import plt, save_figure
from training.studies import end_to_end as e2e
from training.studies.common import END_TO_END_PART, StudyOptions, markdown_table, write_part

TARGET_CLEAN = 0.990  # beat the original's 98.8% with clean labels
TITLES = {"bce": "cross-entropy", "gce": "generalized cross-entropy (q = 0.7)"}


def _key(run: dict) -> tuple:
    return (run["rate"], run["loss"], run["seed"], len(run["history"]), run.get("sequences_per_epoch"))


def run(options: StudyOptions) -> Path:
    epochs = options.epochs or e2e.EPOCHS
    per_epoch = e2e.SEQUENCES_PER_EPOCH if not options.limit else min(e2e.SEQUENCES_PER_EPOCH, 4 * options.limit)
    max_batches = 3 if options.limit else None  # smoke runs: a few batches per epoch
    store = options.out / "label-noise-end-to-end.json"
    stored = json.loads(store.read_text()) if store.exists() else {"runs": [], "probes": {}}
    done = {_key(r) for r in stored["runs"]}
    device = select_device(options.device)
    data = prepare(options.data_dir, 5000, options.seed, options.limit)
    seeds = [options.seed + i for i in range(options.seeds)]

    probes: dict[str, float] = dict(stored["probes"])
    evidence = None
    for seed in seeds:
        for loss in options.losses or e2e.LOSSES:
            for rate in options.rates or e2e.RATES:
                if (rate, loss, seed, epochs, per_epoch) in done:
                    continue
                print(f"end-to-end: {rate:.0%} flipped, {loss}, seed {seed}", flush=True)
                result, model = e2e.train_run(data, rate, loss, seed, device, epochs, per_epoch, max_batches)
                record = {**asdict(result), "sequences_per_epoch": per_epoch}
                stored["runs"].append(record)
                print(f"  clean test accuracy {100 * result.test_accuracy:.2f}% ({result.seconds:.0f} s)", flush=True)
                if seed == seeds[0] and (rate, loss) in ((0.0, "bce"), (max(e2e.RATES), "gce")):
                    probes[f"{rate:.0%} {loss}"] = e2e.probe(model, data, seed, device)
                    if (rate, loss) == (0.0, "bce"):
                        evidence = e2e.four_evidence(model, data, device)
                store.write_text(json.dumps({"runs": stored["runs"], "probes": probes}, indent=1) + "\n")
    if "random encoder" not in probes:
        probes["random encoder"] = e2e.probe(e2e.new_model(options.seed, device), data, options.seed, device)
    store.write_text(json.dumps({"runs": stored["runs"], "probes": probes}, indent=1) + "\n")

    runs = [r for r in stored["runs"] if len(r["history"]) == epochs and r.get("sequences_per_epoch") == per_epoch]
    curves = options.out / "label-noise-end-to-end.png"
    _plot_curves(runs, epochs, curves)
    figure = options.out / "label-noise-evidence.png"
    if evidence is not None:
        _plot_evidence(*evidence, data.test.images, figure)
    report = options.out / "label-noise.md"
    write_part(report, END_TO_END_PART, _report(runs, probes, epochs, per_epoch, curves, figure, options))
    return report


def _by(runs: list[dict], rate: float, loss: str) -> list[dict]:
    return [r for r in runs if r["rate"] == rate and r["loss"] == loss]


def _cell(values: list[float]) -> str:
    if not values:
        return "(not run)"
    mean = 100 * float(np.mean(values))
    if len(values) == 1:
        return f"{mean:.2f}% (1 seed)"
    return f"{mean:.2f}% ± {100 * float(np.std(values, ddof=1)):.2f} ({len(values)} seeds, {100 * min(values):.2f}-{100 * max(values):.2f})"


def _last_is_best(runs: list[dict]) -> int:
    return sum(r["history"][-1]["val_acc"] >= max(h["val_acc"] for h in r["history"]) for r in runs)


def _selection_rows(runs: list[dict]) -> list[list[object]]:
    rows = []
    for run in sorted(runs, key=lambda r: (r["loss"], r["rate"], r["seed"])):
        history = run["history"]
        kept = history[run["kept_epoch"] - 1]
        rows.append([run["loss"], f"{run['rate']:.0%}", run["seed"], int(kept["epoch"]), f"{100 * kept['val_acc']:.2f}%",
                     f"{100 * history[-1]['val_acc']:.2f}%", f"{100 * run['test_accuracy']:.2f}%"])
    return rows


def _plot_curves(runs: list[dict], epochs: int, path: Path) -> None:
    fig, axes = plt.subplots(1, len(e2e.LOSSES), figsize=(6 * len(e2e.LOSSES), 4.2), sharey=True, squeeze=False)
    for ax, loss in zip(axes[0], e2e.LOSSES):
        for rate in e2e.RATES:
            chosen = _by(runs, rate, loss)
            if not chosen:
                continue
            curves = np.array([[100 * h["val_acc"] for h in r["history"]] for r in chosen])
            x = range(1, epochs + 1)
            ax.plot(x, curves.mean(0), "-o", label=f"{rate:.0%} flipped ({len(chosen)} seed{'s' * (len(chosen) > 1)})")
            if len(chosen) > 1:
                ax.fill_between(x, curves.min(0), curves.max(0), alpha=0.2)
        ax.axhline(100 * TARGET_CLEAN, color="gray", linestyle="--", linewidth=1, label="target 99.0%")
        ax.set(title=TITLES[loss], xlabel="epoch", ylabel="clean validation accuracy (%)", xticks=range(1, epochs + 1))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("CNN-LSTM trained end to end from sequence labels alone (encoder from random weights)")
    save_figure(fig, path)


def _plot_evidence(logits: np.ndarray, labels: np.ndarray, images: np.ndarray, path: Path) -> None:
    order = np.argsort(-logits)
    fig = plt.figure(figsize=(13, 4.6))
    grid = fig.add_gridspec(4, 14)
    for k, index in enumerate(order[:40]):
        ax = fig.add_subplot(grid[k // 10, k % 10])
        ax.imshow(images[index], cmap="gray_r")
        ax.set_title(f"{labels[index]}", fontsize=8, color="black" if labels[index] == 4 else "red")
        ax.axis("off")
    ax = fig.add_subplot(grid[:, 10:])
    means = [float(logits[labels == d].mean()) for d in range(10)]
    ax.barh(range(10), means, color=["tab:blue" if d == 4 else "tab:gray" for d in range(10)])
    ax.set(yticks=range(10), xlabel="mean logit", ylabel="true digit", title="'contains a 4' logit\nfor one digit alone")
    ax.invert_yaxis()
    fig.suptitle("The 40 test digits that most raise the 'contains a 4' logit (true label above; red: not a 4)")
    save_figure(fig, path)


def _report(runs: list[dict], probes: dict[str, float], epochs: int, per_epoch: int, curves: Path, figure: Path,
            options: StudyOptions) -> str:
    seeds = sorted({r["seed"] for r in runs})
    rows = [[f"{rate:.0%}"] + [_cell([r["test_accuracy"] for r in _by(runs, rate, loss)]) for loss in e2e.LOSSES]
            for rate in e2e.RATES]
    flips = {rate: [r["flipped_share"] for r in runs if r["rate"] == rate] for rate in e2e.RATES}
    clean = {loss: [r["test_accuracy"] for r in _by(runs, 0.0, loss)] for loss in e2e.LOSSES}
    noisy = {loss: [r["test_accuracy"] for r in _by(runs, max(e2e.RATES), loss)] for loss in e2e.LOSSES}
    lines = []
    for loss in e2e.LOSSES:
        if clean[loss] and noisy[loss]:
            gap = 100 * (np.mean(clean[loss]) - np.mean(noisy[loss]))
            lines.append(f"- {TITLES[loss]}: clean {100 * np.mean(clean[loss]):.2f}%, at 40% flipped "
                         f"{100 * np.mean(noisy[loss]):.2f}%: {gap:.2f} points below its clean figure "
                         f"(target: within 1 point{', met' if gap <= 1 else f', missed by {gap - 1:.2f}'}).")
    top = max(e2e.RATES)
    def last_gain(rate: float) -> list[float]:
        return [100 * (r["history"][-1]["val_acc"] - r["history"][-2]["val_acc"]) for r in runs
                if r["rate"] == rate and len(r["history"]) > 1]

    rising, settled = last_gain(top), last_gain(0.0)
    why = "" if not (rising and settled) else f"""
Why the 40% runs stay short of their clean figures: each epoch draws fresh sequences, so no label,
flipped or not, is seen twice and there is nothing to memorise, which is what noise-robust losses
guard against. What the flips do is thin the signal: a flipped label pulls the opposite way, so
at rate r a label carries 1 - 2r of its clean pull (a fifth at 40%) and about (1 - 2r)^2 of its
information near the decision boundary (a twenty-fifth): 60,000 noisy sequences teach roughly
what 2,400 clean ones would. The runs are short of data, not overfitting: in their last epoch the
40% runs still gained {np.mean(rising):.2f} points of clean validation accuracy on average
({min(rising):.2f} to {max(rising):.2f}), the clean runs {np.mean(settled):.2f}. More sequences
per run would close the gap; the study keeps the original's budget of 60,000.
"""
    best_clean = max((np.mean(v) for v in clean.values() if v), default=math.nan)
    verdict = (f"Best clean figure {100 * best_clean:.2f}% against the target 99.0% "
               f"({'met' if best_clean >= TARGET_CLEAN else f'missed by {100 * (TARGET_CLEAN - best_clean):.2f} points'}).")
    error = math.sqrt(0.99 * 0.01 / 10_000)
    probe_rows = [[name, f"{100 * value:.2f}%"] for name, value in probes.items()]
    per_run = float(np.median([r["seconds"] for r in runs])) if runs else 0.0
    counts = {rate: len({r["seed"] for r in runs if r["rate"] == rate}) for rate in e2e.RATES}
    seed_note = ("" if min(counts.values()) >= 3 else
                 " Seeds per flip rate: " + ", ".join(f"{rate:.0%}: {n}" for rate, n in counts.items()) + ". A run takes "
                 f"about {per_run / 60:.0f} minutes on this 2-core CPU when it has the machine to itself (the median "
                 f"run), so three seeds of six configurations take {18 * per_run / 3600:.1f} h. `--seeds 3` adds the "
                 "missing runs without retraining these.")
    return f"""## End to end: the original's setting (encoder from random weights)

Command: `python -m training study label-noise --setting end-to-end --data-dir <MNIST> --seeds {len(seeds)}`
(seeds {", ".join(map(str, seeds))}; {len(runs)} training runs).{seed_note}

{(e2e.__doc__ or "").split(chr(10) + chr(10), 1)[1].strip()}

Each run: {epochs} epochs of {per_epoch:,} fresh sequences ({epochs * per_epoch:,} in all, as many as the original's
one epoch of 60,000), lengths N(10, 3) clipped to 3..30, digits from the 55,000 fit images, batch {e2e.BATCH_SIZE},
AdamW with a one-cycle learning rate peaking at {e2e.LR:g}, no augmentation; validation: {e2e.VAL_SEQUENCES:,}
sequences of the 5,000 held-out training images, labelled as noisily as the run's training sequences; test: the same 10,000 test sequences as every other figure.
Share of training labels actually flipped: {", ".join(f"{rate:.0%} asked, {100 * np.mean(v):.1f}% measured" for rate, v in flips.items() if v)}.

### Clean test accuracy (10,000 test sequences)

{markdown_table(["labels flipped"] + [TITLES[loss] for loss in e2e.LOSSES], rows)}

Which epoch each run kept, and what the clean validation labels (which the selection never sees)
say of it and of the last epoch:

{markdown_table(["loss", "flipped", "seed", "epoch kept", "clean validation, kept", "clean validation, last epoch",
                 "clean test, kept"], _selection_rows(runs))}

One standard error at 99% on 10,000 sequences is about {100 * error:.2f} points. {verdict}

{chr(10).join(lines)}
{why}
How the epoch is chosen matters as much as the loss at these rates. Without clean labels the
only yardstick is the noisy validation labels. Their accuracy is used: under symmetric flips its
expectation is rate + (1 - 2 x rate) x the clean accuracy, so it ranks epochs as the clean
accuracy would, whatever the loss, though it shrinks every difference to a fifth at 40%, hence
the 20,000 validation sequences. (A first version chose by the noisy log-loss instead; that
suits cross-entropy, trained to be calibrated, but punishes generalized cross-entropy for the
confident answers it is meant to give, and it kept that loss's first, worst epoch at 40%.) With
the one-cycle schedule the last epoch was the best on clean validation in {_last_is_best(runs)} of
the {len(runs)} runs.

![clean validation accuracy by epoch, end to end]({curves.name})

### What the encoder learnt without digit labels

A linear classifier on the frozen encoder's 256-value embeddings, fitted with the labels of 1% of
the fit images (chosen at random) and scored on the 10,000 test digits; the encoders are those of
the first seed's clean cross-entropy run and 40% generalized cross-entropy run, and for reference
one with random weights:

{markdown_table(["encoder", "digit accuracy of the linear probe"], probe_rows)}

![the digits that most excite the 4 evidence]({figure.name})
"""
