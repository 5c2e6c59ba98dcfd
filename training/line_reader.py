"""LineReader: reads a strip of handwritten digits whole, trained with CTC (``weights/line_reader.pt``).

Data: strips rendered from MNIST digits as the world writes them (``training.render``: patterned
paper, punctuation and lines that are not digits, touching and broken digits, slant, blur,
JPEG), made afresh for every batch by ``--workers`` processes, so the network never sees the
same strip twice. Fit strips use the training split's fit part; the validation strips, on which
the epoch kept is chosen, use its held-out part; the test figures use the test split only:

- by condition (``CONDITIONS``) with the training style, and the same conditions with
  ``DEV_STYLE``, whose paper patterns and marks training never draws (how well reading carries
  over to paper and punctuation it has not seen);
- MNIST-made strips (``training.strips.make_strip``) of lengths uniform over 3-30 and N(10, 3),
  the figures ``scripts.strip_accuracy`` measures through the service.

An "epoch" is ``STEPS_PER_EPOCH`` batches of fresh strips.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm.auto import tqdm

from model.architectures import LineReader, count_parameters
from model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from model.devices import native_bf16
from model.preprocess import NoInkError
from model.line import BLANK_CLASS, DEFAULT_LINE, LineConfig, batch_lines, decode, read_lines, steps_for, strip_to_line
from training import distributed
from training.augment import AffineAugment
from training.data import Split, load_split, train_val_indices
from training.loop import Step, optimise, seed_everything, train_epochs
from training.provenance import provenance, write_json
from training.options import Precision, RunOptions
from training.plots import plot_reading_curves
from training.render import CONDITIONS, DEV_STYLE, TRAIN_STYLE, StripSet, Style, draw_length, render_set, render_strip

VERSION = "1.0.0"
ARGUMENTS: dict[str, Any] = {"channels": [32, 64, 128, 192], "hidden": 192, "layers": 2, "dropout": 0.2}
STEPS_PER_EPOCH = 1500
CLIP_NORM = 5.0  # CTC's gradients spike on the odd hard strip; the global norm is clipped
VAL_STRIPS = 600  # per style
TEST_STRIPS = 500  # per condition and style; per length law for the MNIST-made strips


class RenderedStrips(IterableDataset):
    """An endless stream of training batches of strips rendered from ``split``'s ``indices``.

    Each worker draws from its own generator, seeded by (seed, worker), and in a distributed run
    by (seed, worker, rank) for ranks past the first: the stream is the same for the same seed,
    worker count and rank, and the processes of a run train on different strips. Strips are rendered ``POOL`` batches at a time and
    grouped by width, so a batch's lines are padded to little more than their own width (a
    batch mixing a one-digit amount and a 30-digit strip would spend most of its work on
    padding)."""

    POOL = 4

    def __init__(self, split: Split, indices: np.ndarray, seed: int, batch_size: int, style: Style = TRAIN_STYLE,
                 line: LineConfig = DEFAULT_LINE, rank: int = 0, reshape: AffineAugment | None = None) -> None:
        self.images, self.labels = split.images[indices], split.labels[indices]
        self.seed, self.batch_size, self.style, self.line, self.rank = seed, batch_size, style, line, rank
        self.reshape = reshape

    def _digits(self, pick: np.ndarray, generator: torch.Generator) -> np.ndarray:
        """The picked digits, each drawn through ``reshape`` when there is one, so that a network
        shown the same 55,000 digits many times over sees new shapes of them."""
        digits = self.images[pick]
        if self.reshape is None or not len(pick):
            return digits
        moved = self.reshape(torch.from_numpy(digits).float().unsqueeze(1), generator)
        return moved.squeeze(1).round().clamp(0, 255).to(torch.uint8).numpy()

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        key = [self.seed, info.id if info else 0] + ([self.rank] if self.rank else [])
        rng = np.random.default_rng(key)
        # Its own stream, so that a run without ``reshape`` renders the strips it always did.
        generator = torch.Generator().manual_seed(int(np.random.SeedSequence(key).generate_state(1)[0]))
        while True:
            pool = []
            for _ in range(self.POOL * self.batch_size):
                pick = rng.integers(0, len(self.labels), draw_length(rng, self.style))
                strip = render_strip(self._digits(pick, generator), self.labels[pick], rng, self.style)
                try:
                    pool.append((strip_to_line(strip.image, self.line).pixels, strip.labels))
                except NoInkError:  # a faint mark alone on busy paper: nothing stands out
                    continue
            pool.sort(key=lambda item: item[0].shape[1])
            for k in rng.permutation(len(pool) // self.batch_size):
                yield collate(pool[k * self.batch_size : (k + 1) * self.batch_size], self.line)


def _one_thread(_: int) -> None:
    """Each loader process renders on one core: the workers, not threads, use the machine."""
    torch.set_num_threads(1)


def collate(items: list[tuple[np.ndarray, list[int]]], line: LineConfig = DEFAULT_LINE) -> dict[str, torch.Tensor]:
    batch, widths = batch_lines([pixels for pixels, _ in items], line)
    return {"lines": batch, "steps": steps_for(widths, line),
            "targets": torch.tensor([d for _, labels in items for d in labels], dtype=torch.int64),
            "target_lengths": torch.tensor([len(labels) for _, labels in items], dtype=torch.int64)}


def ctc_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], device: torch.device,
             precision: Precision = "fp32", anchor: torch.nn.Module | None = None, anchor_weight: float = 0.0) -> torch.Tensor:
    """CTC loss of one batch; with ``precision="bf16"`` the network runs under bfloat16 autocast
    and the loss is still computed in fp32 (its log-sum-exps need the range).

    With an ``anchor`` (the network a continuation starts from, frozen), ``anchor_weight`` times
    ``anchor_loss`` is added: what lets a continuation learn new writing without unlearning the
    rest."""
    def forward(network: torch.nn.Module) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            return network(batch["lines"].to(device, non_blocking=True), batch["steps"]).float()

    log_probs = forward(model)
    loss = F.ctc_loss(log_probs.transpose(0, 1), batch["targets"].to(device), batch["steps"], batch["target_lengths"],
                      blank=BLANK_CLASS, zero_infinity=True)
    if anchor is None or not anchor_weight:
        return loss
    with torch.no_grad():
        held = forward(anchor)
    return loss + anchor_weight * anchor_loss(log_probs, held, batch)


def anchor_loss(log_probs: torch.Tensor, held: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """KL divergence of the network's step distributions from the anchor's, on the strips the
    anchor reads right (best path equal to the truth), per true digit as the CTC loss is.

    Learning without forgetting (Li and Hoiem, 2016), restricted to what the anchor gets right:
    a continuation on small batches drifts from what the first runs learnt, on the writing it is
    not about as well; holding its outputs where they were right keeps that, while the strips the
    anchor misreads, the new writing among them, are left to the CTC loss alone."""
    steps, lengths = batch["steps"].to(held.device), batch["target_lengths"]
    probabilities = held.exp().cpu().numpy()
    truths = batch["targets"].split(lengths.tolist())
    right = torch.tensor([decode(p[: int(n)]).labels == truth.tolist()
                          for p, n, truth in zip(probabilities, batch["steps"], truths)], dtype=torch.bool)
    valid = torch.arange(held.shape[1], device=held.device)[None, :] < steps[:, None]
    per_step = (held.exp() * (held - log_probs)).sum(-1) * valid
    kept = right.to(held.device)
    return per_step[kept].sum() / lengths[right].sum().clamp(min=1).to(held.device)


def edit_distance(a: list[int], b: list[int]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def score(read: list[list[int]], fours: list[bool], truths: list[list[int]]) -> dict[str, float]:
    """Exact strips, digit error (edit distance per true digit), count and contains-4 right."""
    n = max(len(truths), 1)
    digits = max(sum(len(t) for t in truths), 1)
    return {"exact": sum(r == t for r, t in zip(read, truths)) / n,
            "digit_error": sum(edit_distance(r, t) for r, t in zip(read, truths)) / digits,
            "count_right": sum(len(r) == len(t) for r, t in zip(read, truths)) / n,
            "contains_4_right": sum(f == (4 in t) for f, t in zip(fours, truths)) / n}


def evaluate_set(model: torch.nn.Module, strips: StripSet, device: torch.device, line: LineConfig = DEFAULT_LINE,
                 batch_size: int = 128, views: tuple[float, ...] = (1.0,)) -> dict[str, float]:
    """Read every strip of the set (batched by width) and score it.

    By default each line is read once, at its own width: the network's own figures, which
    choose the epoch and are recorded in the checkpoint. The service reads at ``model.line.VIEWS``,
    the others only for lines it is unsure of (``model.line.read_lines``; docs/strip-reading.md
    has both)."""
    model.eval()
    pixels: dict[int, np.ndarray] = {}  # strip index -> its line; none where nothing stands out,
    for i, image in enumerate(strips.images):  # which reads as no digit (the service's 422 no_digit_found)
        try:
            pixels[i] = strip_to_line(image, line).pixels
        except NoInkError:
            pass
    order = sorted(pixels, key=lambda i: pixels[i].shape[1])
    read: list[list[int]] = [[] for _ in strips.images]
    fours = [False] * len(strips.images)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        for i, reading in zip(chunk, read_lines(model, [pixels[i] for i in chunk], device, line, views)):
            read[i], fours[i] = reading.labels, reading.contains_4 >= 0.5
    return score(read, fours, strips.labels)


def train(options: RunOptions) -> Path:
    """Train the line reader on freshly rendered strips. Under torchrun every process renders
    its own strips (its share of ``--batch-size``, the global batch) and DDP averages the
    gradients; rank 0 alone validates, reports and writes."""
    if options.anchor and not options.init_from:
        raise SystemExit("--anchor holds a continuation to the network it starts from: it needs --init-from")
    started = time.time()
    seed_everything(options.seed)
    world, device = distributed.join(options.device)
    if options.batch_size % world.size:
        raise SystemExit(f"--batch-size {options.batch_size} must divide by the {world.size} processes")
    if options.precision == "bf16" and world.main and not native_bf16(device):
        tqdm.write(f"warning: this {device.type} has no native bfloat16: --precision bf16 is emulated, "
                   "and slower than fp32", file=sys.stderr)
    train_split, test_split = load_split("train", options.data_dir), load_split("test", options.data_dir)
    fit_idx, val_idx = train_val_indices(len(train_split), options.val_size, options.seed)
    if options.limit:
        fit_idx = fit_idx[: options.limit]
    workers = options.workers if options.workers is not None else max(1, (os.cpu_count() or 2) - 1)
    overrides = {"mnist_share": options.mnist_share, "ballpoint_rate": options.ballpoint_share,
                 "tilt_rate": options.tilt_share, "digit_scale": options.digit_scale}
    style = dataclasses.replace(TRAIN_STYLE, **{name: value for name, value in overrides.items() if value is not None})
    reshape = AffineAugment() if options.reshape_digits else None
    loader = DataLoader(RenderedStrips(train_split, fit_idx, options.seed, options.batch_size // world.size, style,
                                       rank=world.rank, reshape=reshape),
                        batch_size=None,
                        num_workers=workers, worker_init_fn=_one_thread, pin_memory=device.type == "cuda",
                        persistent_workers=workers > 0, prefetch_factor=4 if workers else None)
    smoke = bool(options.limit)  # a smoke run: few steps, few evaluation strips
    val_count, test_count = (20, 10) if smoke else (VAL_STRIPS, TEST_STRIPS)
    val_sets = [render_set("val", train_split, val_idx, val_count, options.seed + 1, TRAIN_STYLE),
                render_set("val_dev", train_split, val_idx, val_count, options.seed + 2, DEV_STYLE)]

    model = LineReader(**ARGUMENTS).to(device)
    if options.init_from:  # continue from an earlier run's weights (a second, shorter schedule)
        model.load_state_dict(load_checkpoint(options.init_from).model.state_dict())
    model = model.to(memory_format=torch.channels_last)  # the convolutions' fast layout, on CPU and GPU
    anchor = copy.deepcopy(model).eval().requires_grad_(False) if options.init_from and options.anchor else None
    trained = world.wrap(model, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=1e-2)
    steps_per_epoch = options.steps_per_epoch or (STEPS_PER_EPOCH if not smoke else max(2, options.limit // options.batch_size))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=options.lr, total_steps=options.epochs * steps_per_epoch,
                                                    pct_start=0.1)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(options.ema_decay), use_buffers=True)
    if world.main:
        options.artefacts.mkdir(parents=True, exist_ok=True)
    stream = iter(loader)

    def epoch_batches(epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        model.train()
        return (next(stream) for _ in range(steps_per_epoch))

    def step(batch: dict[str, torch.Tensor]) -> Step:
        loss = ctc_loss(trained, batch, device, options.precision, anchor, options.anchor)
        optimise(loss, optimizer, scheduler, clip_norm=CLIP_NORM)
        ema.update_parameters(model)
        return Step(loss.item(), len(batch["target_lengths"]))

    def validate(epoch: int) -> dict[str, float]:
        if not world.main:  # rank 0 alone reads the validation strips
            return {}
        val, val_dev = (evaluate_set(ema.module, s, device) for s in val_sets)
        return {"val_acc": val["exact"], "val_acc_dev": val_dev["exact"],
                "val_digit_error": val["digit_error"], "val_digit_error_dev": val_dev["digit_error"]}

    def chosen(record: dict[str, float]) -> float:  # both styles' exact share, equally weighted
        return (record["val_acc"] + record["val_acc_dev"]) / 2 if "val_acc" in record else 0.0

    def keep() -> dict[str, torch.Tensor] | None:
        if not world.main:
            return None
        state = copy.deepcopy(ema.module.state_dict())
        torch.save(state, options.artefacts / "best_epoch.pt")  # survives a run cut short
        return state

    def time_up(epoch: int) -> bool:
        late = bool(options.time_limit and time.time() - started > options.time_limit and epoch < options.epochs)
        if world.total(float(late and world.main))[0]:  # rank 0's clock decides for every process
            if world.main:
                tqdm.write(f"time limit of {options.time_limit} s reached after epoch {epoch}: stopping")
            return True
        return False

    fitted = train_epochs(options.epochs, "line reader", steps_per_epoch, epoch_batches, step, validate, chosen, keep,
                          show=world.main, stop=time_up)
    history, stopped_after = fitted.history, fitted.epochs_run
    if not world.main:
        world.barrier()  # until rank 0 has written the checkpoint
        distributed.leave(world)
        return options.out
    model.load_state_dict(fitted.kept)
    metrics = test_metrics(model, test_split, device, test_count)
    metrics["val_exact"] = fitted.score
    metadata = {
        "name": "line_reader",
        "task": "read a strip of handwritten digits whole (CNN-BiLSTM, CTC); P(contains a 4) from its step probabilities",
        "architecture": "LineReader",
        "arguments": ARGUMENTS,
        "version": VERSION,
        "labels": [str(d) for d in range(10)] + ["<blank>"],
        "preprocess": DEFAULT_LINE.to_dict(),
        "parameters": count_parameters(model),
        "dataset": {"name": "MNIST", "sha256": {**train_split.checksums, **test_split.checksums},
                    "strips": "rendered by training.render (TRAIN_STYLE), fresh each batch"},
        "hyperparameters": {**options.hyperparameters(), "workers": workers, "processes": world.size, "optimizer": "AdamW wd 1e-2",
                            "schedule": "one-cycle", "steps_per_epoch": steps_per_epoch, "loss": "CTC",
                            "epochs_run": stopped_after,
                            "weights": f"exponential moving average, decay {options.ema_decay}"},
        "metrics": metrics,
        "history": history.epochs,
        **provenance(device, started),
    }
    save_checkpoint(model, metadata, options.out)
    (options.artefacts / "best_epoch.pt").unlink()  # only now: the weights are safe in the checkpoint
    write_json(options.artefacts / "metrics.json", {"metrics": metrics, "history": history.epochs,
                                                    "train_seconds": metadata["train_seconds"]})
    plot_reading_curves(history.epochs, options.artefacts / "curves.png",
                        f"line reader (test: unseen-style cheque-like strips read exactly {100 * metrics['test_accuracy']:.1f}%)")
    world.barrier()
    distributed.leave(world)
    return options.out


def test_metrics(model: torch.nn.Module, test: Split, device: torch.device, count: int = TEST_STRIPS,
                 only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Figures on test digits only: by condition for each style, and on MNIST-made strips (or
    just the sets named in ``only``). The strips are fixed (their seeds do not depend on the
    run's), so every checkpoint is scored on the same ones."""
    everything = np.arange(len(test))
    sets: dict[str, tuple[int, Style, str, str]] = {}  # name -> seed, style, condition, lengths
    for style_name, style, offset in (("train_style", TRAIN_STYLE, 0), ("dev_style", DEV_STYLE, 5)):
        for k, condition in enumerate(CONDITIONS):
            sets[f"test_{style_name}_{condition}"] = (1000 + 10 * k + offset, style, condition, "mixed")
    for lengths in ("uniform", "study"):
        sets[f"test_mnist_strips_{lengths}"] = (2000, TRAIN_STYLE, "mnist", lengths)
    metrics: dict[str, Any] = {}
    for name, (seed, style, condition, lengths) in sets.items():
        if only is None or name in only:
            strips = render_set(condition, test, everything, count, seed, style, condition, lengths)
            metrics[name] = evaluate_set(model, strips, device)
    if "test_dev_style_cheque" in metrics:  # the headline: unseen-style cheque-like strips read exactly
        metrics["test_accuracy"] = metrics["test_dev_style_cheque"]["exact"]
    return metrics


def evaluate_command(checkpoint: Checkpoint, data_dir: str | None, device: torch.device) -> dict[str, Any]:
    """``python -m training evaluate weights/line_reader.pt``: recompute the test figures."""
    return test_metrics(checkpoint.model.to(device), load_split("test", data_dir), device)
