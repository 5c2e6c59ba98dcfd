"""GlyphCounter: how many digits one glyph of a strip holds (``weights/segmenter.pt``).

Strip reading cuts a row of digits into glyphs, runs of connected ink
(``model.preprocess.find_glyphs``). Touching digits make one glyph, and the digit classifier
cannot see the merge: it reads a "1" leaning on a "7" as a confident "7". This network learns
the shapes of touching digits from strips rendered the way users write (``training.strips``),
cut by the serving segmentation itself, each glyph labelled with how many digits' centres its
strokes span. Serving weighs its answer with the digit classifier's (``_counted_split``).

Data: strips of 3-30 digits whose gaps are drawn up to 1/3 of a digit's width (as users space
them), up to 0.08, or 0 (boxes abutting), in equal shares, so that touching digits are common
enough to learn from. Fit strips use the training split's fit part, validation strips its
held-out part, test strips the test split. Only glyphs wide enough for serving to ask about
(``COUNTED_WIDTH``) are kept.

One-digit glyphs outnumber the rest about 25 to 1; the fit set keeps a quarter of them
(``SINGLES_KEPT``) and the final layer's bias for "one digit" is shifted back by log 4, which
restores the true prior exactly for a softmax. The test metrics include the figure the network
exists for: strips of test digits read end to end, with and without it.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from model.architectures import GlyphCounter, count_parameters
from model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from model.devices import select_device
from model.preprocess import (
    COUNTED_WIDTH,
    DEFAULT_CONFIG,
    GLYPH_HEIGHT,
    GLYPH_ROW,
    GLYPH_WIDTH,
    Judge,
    StripGlyph,
    find_glyphs,
    glyph_to_array,
    normalise,
    preprocess_strip,
    to_gray,
    to_ink,
)
from training.data import Split, load_split, train_val_indices
from training.digit import load_init
from training.engine import (
    History,
    batches,
    optimise,
    predict_logits,
    progress,
    provenance,
    seed_everything,
    write_json,
)
from training.options import RunOptions
from training.plots import confusion_matrix, plot_confusion, plot_curves
from training.strips import make_strip

VERSION = "1.0.0"
ARGUMENTS: dict[str, Any] = {"channels": [16, 32, 64, 64], "most": 4, "dropout": 0.2}
LABELS = ["1 digit", "2 digits", "3 digits", "4+ digits"]
DEFAULT_JUDGE = Path("weights/digit.pt")
# Largest gap between neighbours, as a share of a digit's width, one value per strip in turn.
GAPS = (1 / 3, 0.08, 0.0)
FIT_STRIPS = 12_000
VAL_STRIPS = 1_500
TEST_STRIPS = 1_500
READ_STRIPS = 1_000  # test strips read end to end, with and without the counter
SINGLES_KEPT = 0.25
SHIFT_PIXELS = 2  # augmentation: the glyph moved left or right by up to this many pixels
TEST_SEED = 2_024


@dataclass(frozen=True)
class GlyphSet:
    """Glyph arrays [N, 1, 32, 96] (float16 to halve the memory) and their class: digits held - 1."""

    arrays: torch.Tensor
    classes: torch.Tensor

    def __len__(self) -> int:
        return len(self.classes)


def digit_judge(checkpoint: Checkpoint, device: torch.device) -> Judge:
    """The digit classifier's top probability for [N, 28, 28] arrays: the judge of segmentation."""
    net = checkpoint.model.to(device).eval()

    @torch.inference_mode()
    def judge(arrays: np.ndarray) -> np.ndarray:
        return net(normalise(arrays, checkpoint.preprocess).to(device)).softmax(1).amax(1).float().cpu().numpy()

    return judge


def digits_held(glyph: StripGlyph, columns: list[tuple[int, int]]) -> int:
    """How many of a strip's digits (each given by its first and last ink column) a glyph holds:
    those whose middle column its strokes span."""
    return sum(glyph.left - 0.5 <= (first + last) / 2 <= glyph.right + 0.5 for first, last in columns)


def render_glyphs(split: Split, pool: np.ndarray, strips: int, rng: np.random.Generator, judge: Judge,
                  most: int, singles_kept: float = 1.0, description: str = "glyphs") -> GlyphSet:
    """``strips`` strips of digits drawn from ``pool`` (indices into ``split``), cut by the serving
    segmentation; each glyph wide enough to be counted at serving, labelled with how many digits'
    centres its strokes span (capped at ``most``). One-digit glyphs are kept with probability
    ``singles_kept``; glyphs holding no digit's centre (a stray piece) are left out."""
    arrays: list[np.ndarray] = []
    classes: list[int] = []
    for number in tqdm(range(strips), desc=description, unit="strip", dynamic_ncols=True, leave=False):
        index = rng.choice(pool, int(rng.integers(3, 31)))
        strip = make_strip(split.images[index], split.labels[index], rng, max_gap=GAPS[number % len(GAPS)])
        for glyph in find_glyphs(to_ink(to_gray(strip.image)), judge):
            if glyph.width_ratio < COUNTED_WIDTH:
                continue
            held = digits_held(glyph, strip.columns)
            if held == 0 or (held == 1 and rng.random() >= singles_kept):
                continue
            arrays.append(glyph_to_array(glyph).astype(np.float16))
            classes.append(min(held, most) - 1)
    return GlyphSet(torch.from_numpy(np.stack(arrays)).unsqueeze(1), torch.tensor(classes, dtype=torch.long))


def read_strips(split: Split, count: int, seed: int, judge: Judge, digit: Checkpoint, device: torch.device,
                counter: torch.nn.Module | None) -> dict[str, float]:
    """``count`` strips of the split's digits (3-30 of them, gaps up to 1/3 of a digit's width, as
    ``scripts/strip_accuracy.py`` draws them) read end to end as the service reads them: the share
    read exactly, with the right number of digits, and with ``contains_4`` right."""
    rng = np.random.default_rng(seed)
    counts = None
    if counter is not None:
        counter = counter.to(device).eval()

        @torch.inference_mode()
        def counts(glyphs: np.ndarray) -> np.ndarray:
            return counter(torch.from_numpy(glyphs).unsqueeze(1).to(device)).softmax(1).float().cpu().numpy()

    net = digit.model.to(device).eval()
    exact = count_right = four_right = 0
    label = "with" if counter is not None else "without"
    for length in tqdm(rng.integers(3, 31, count), desc=f"strips read {label} the counter", unit="strip", leave=False):
        index = rng.integers(0, len(split), int(length))
        strip = make_strip(split.images[index], split.labels[index], rng)
        arrays = preprocess_strip(strip.image, judge, digit.preprocess, counts)
        with torch.inference_mode():
            read = net(normalise(arrays, digit.preprocess).to(device)).argmax(1).tolist()
        exact += read == strip.labels
        count_right += len(read) == len(strip.labels)
        four_right += (4 in read) == (4 in strip.labels)
    return {"exact": exact / count, "count_right": count_right / count, "contains_4_right": four_right / count}


def _logits(model: GlyphCounter, glyphs: GlyphSet, device: torch.device, prior_shift: float) -> torch.Tensor:
    """Logits over a glyph set, with the one-digit logit shifted by ``prior_shift``."""
    logits = predict_logits(model, glyphs.arrays.float(), device)
    shift = torch.zeros(logits.shape[1])
    shift[0] = prior_shift
    return logits + shift


def _shift(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The batch moved left or right by up to ``SHIFT_PIXELS`` (one draw for the batch)."""
    pixels = int(torch.randint(-SHIFT_PIXELS, SHIFT_PIXELS + 1, (1,), generator=generator))
    return torch.roll(images, pixels, dims=3)


def glyph_metrics(logits: torch.Tensor, classes: torch.Tensor) -> dict[str, Any]:
    predicted = logits.argmax(1)
    several = classes > 0
    return {
        "test_accuracy": float(predicted.eq(classes).float().mean()),
        "test_nll": float(F.cross_entropy(logits, classes)),
        "test_glyphs": len(classes),
        "test_merges_missed": int((several & (predicted == 0)).sum()),
        "test_merges": int(several.sum()),
        "test_singles_split": int((~several & (predicted > 0)).sum()),
        "confusion": confusion_matrix(classes.numpy(), predicted.numpy(), logits.shape[1]).tolist(),
    }


def test_metrics(model: GlyphCounter, split: Split, glyph_strips: int, read_count: int, judge: Judge, digit: Checkpoint,
                 device: torch.device) -> tuple[dict[str, Any], np.ndarray]:
    """The counter's test figures (what training records and ``evaluate`` recomputes): on the
    glyphs of ``glyph_strips`` strips of the split's digits, and on ``read_count`` strips read end
    to end with and without it. Returns the metrics and the glyphs' confusion matrix."""
    glyphs = render_glyphs(split, np.arange(len(split)), glyph_strips, np.random.default_rng(TEST_SEED), judge, model.most,
                           description="test glyphs")
    metrics = glyph_metrics(_logits(model, glyphs, device, 0.0), glyphs.classes)
    confusion = np.array(metrics.pop("confusion"))
    with_counter = read_strips(split, read_count, TEST_SEED, judge, digit, device, model)
    without = read_strips(split, read_count, TEST_SEED, judge, digit, device, None)
    metrics.update({"test_strips": read_count,
                    **{f"test_strips_{key}": value for key, value in with_counter.items()},
                    **{f"test_strips_{key}_without_counter": value for key, value in without.items()}})
    return metrics, confusion


def train(options: RunOptions) -> Path:
    """``python -m training train segmenter``: render glyphs, fit the counter, write the checkpoint."""
    started = time.time()
    generator = seed_everything(options.seed)
    rng = np.random.default_rng(options.seed)
    device = select_device(options.device)
    judge_path = options.init_from or DEFAULT_JUDGE
    digit = load_init(judge_path, device)
    judge = digit_judge(digit, device)
    most = int(ARGUMENTS["most"])
    train_split, test_split = load_split("train", options.data_dir), load_split("test", options.data_dir)
    fit_pool, val_pool = train_val_indices(len(train_split), options.val_size, options.seed)
    scale = 1.0 if options.limit is None else min(1.0, options.limit / FIT_STRIPS)
    fit_strips, val_strips, test_strips, read_count = (max(8, round(n * scale)) for n in (FIT_STRIPS, VAL_STRIPS, TEST_STRIPS, READ_STRIPS))
    fit = render_glyphs(train_split, fit_pool, fit_strips, rng, judge, most, SINGLES_KEPT, "fit glyphs")
    val = render_glyphs(train_split, val_pool, val_strips, rng, judge, most, description="validation glyphs")
    prior_shift = -math.log(SINGLES_KEPT)

    model = GlyphCounter(**ARGUMENTS).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=1e-4)
    steps = -(-len(fit) // options.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=options.lr, total_steps=options.epochs * steps, pct_start=0.2)
    history, best = History(), (math.inf, None)
    for epoch in range(1, options.epochs + 1):
        model.train()
        seen, loss_sum, correct = 0, 0.0, 0
        bar = progress(batches(len(fit), options.batch_size, generator), steps, f"segmenter {epoch}/{options.epochs}")
        for index in bar:
            images = _shift(fit.arrays[index].float(), generator).to(device)
            targets = fit.classes[index].to(device)
            logits = model(images)
            loss = F.cross_entropy(logits, targets)
            optimise(loss, optimizer, scheduler)
            seen += len(index)
            loss_sum += loss.item() * len(index)
            correct += int(logits.argmax(1).eq(targets).sum())
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
        val_logits = _logits(model, val, device, prior_shift)
        val_loss = float(F.cross_entropy(val_logits, val.classes))
        history.add(epoch=epoch, train_loss=loss_sum / seen, train_acc=correct / seen, val_loss=val_loss,
                    val_acc=float(val_logits.argmax(1).eq(val.classes).float().mean()))
        if val_loss <= best[0]:  # nearly every glyph is right: the likelihood separates epochs, accuracy rarely
            best = (val_loss, copy.deepcopy(model.state_dict()))

    model.load_state_dict(best[1])
    with torch.no_grad():  # the fit set's missing one-digit glyphs, restored to the prior
        model.head[-1].bias[0] += prior_shift
    metrics, confusion = test_metrics(model, test_split, test_strips, read_count, judge, digit, device)
    metrics["val_nll"] = best[0]

    metadata = {
        "name": "segmenter",
        "task": "count the digits in one glyph of a strip (touching digits)",
        "architecture": "GlyphCounter",
        "arguments": ARGUMENTS,
        "version": VERSION,
        "labels": LABELS,
        "preprocess": DEFAULT_CONFIG.to_dict(),
        "input": {"height": GLYPH_HEIGHT, "width": GLYPH_WIDTH, "row_height": GLYPH_ROW, "counted_width": COUNTED_WIDTH},
        "parameters": count_parameters(model),
        "dataset": {"name": "MNIST", "sha256": {**train_split.checksums, **test_split.checksums},
                    "strips": {"fit": fit_strips, "validation": val_strips, "test": test_strips, "read": read_count,
                               "lengths": "uniform 3..30", "gaps": "largest gap 1/3, 0.08 or 0 of a digit's width, in turn"},
                    "glyphs": {"fit": len(fit), "validation": len(val), "test": metrics["test_glyphs"]},
                    "singles_kept": SINGLES_KEPT},
        "hyperparameters": {**options.hyperparameters(), "optimizer": "AdamW wd 1e-4", "schedule": "one-cycle",
                            "augmentation": f"horizontal shift up to {SHIFT_PIXELS} px",
                            "judge": f"{judge_path.name} ({digit.sha256[:12]})"},
        "metrics": metrics,
        "history": history.epochs,
        **provenance(device, started),
    }
    save_checkpoint(model, metadata, options.out)
    write_json(options.artefacts / "metrics.json", {"metrics": metrics, "history": history.epochs, "train_seconds": metadata["train_seconds"]})
    plot_curves(history.epochs, options.artefacts / "curves.png",
                f"GlyphCounter (test glyphs {100 * metrics['test_accuracy']:.2f}% right; "
                f"test strips read exactly {100 * metrics['test_strips_exact']:.1f}%)")
    plot_confusion(confusion, LABELS, options.artefacts / "confusion.png", f"GlyphCounter, {metrics['test_glyphs']} glyphs of test strips")
    return options.out


def evaluate_command(checkpoint: Checkpoint, data_dir: str | None, device: torch.device) -> dict[str, Any]:
    """``python -m training evaluate``: the glyph and strip test metrics, recomputed (the judge
    is ``weights/digit.pt``)."""
    digit = load_checkpoint(DEFAULT_JUDGE, map_location=device)
    judge = digit_judge(digit, device)
    return test_metrics(checkpoint.model, load_split("test", data_dir), TEST_STRIPS, READ_STRIPS, judge, digit, device)[0]
