"""The pieces every training loop shares: seeding, shuffled batches, progress bars, an
optimiser step, the epoch loop (``train_epochs``: what differs between the models comes in as
callbacks), the per-epoch history, and batched evaluation."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch; return a CPU generator for the run's own random draws."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


def batches(count: int, batch_size: int, generator: torch.Generator | None, shuffle: bool = True) -> Iterator[torch.Tensor]:
    """Index batches over ``range(count)``, shuffled with ``generator``."""
    order = torch.randperm(count, generator=generator) if shuffle else torch.arange(count)
    yield from torch.split(order, batch_size)


def progress(iterable: Any, total: int, description: str, show: bool = True) -> tqdm:
    return tqdm(iterable, total=total, desc=description, unit="batch", dynamic_ncols=True, leave=False, disable=not show)


def optimise(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
             clip_norm: float | None = None) -> None:
    """One training step: the gradients of ``loss`` (their global norm clipped to ``clip_norm``
    when given), the optimiser's update, and the schedule's next learning rate."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_norm is not None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, clip_norm)
    optimizer.step()
    scheduler.step()


@dataclass
class History:
    """Per-epoch train/validation loss and accuracy: the training curves."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    show: bool = True  # print each epoch's line (only one process of a distributed run does)

    def add(self, **values: float) -> None:
        self.epochs.append({k: float(v) for k, v in values.items()})
        if not self.show:
            return
        parts = "  ".join(f"{k} {v:.4f}" for k, v in self.epochs[-1].items() if k != "epoch")
        tqdm.write(f"epoch {int(values['epoch'])}: {parts}")


@dataclass(frozen=True)
class Step:
    """What one optimiser step reports: the batch's mean loss, its size, and how many of its
    examples the model got right (the training accuracy; ``None`` where there is no such count,
    as for a line reader's strips)."""

    loss: float
    count: int
    correct: int | None = None


@dataclass
class Fitted:
    """The curves, and what ``keep`` returned for the epoch with the best score, with that score
    and that epoch."""

    history: History
    kept: Any
    score: float
    epoch: int
    epochs_run: int


def train_epochs(epochs: int, description: str, steps: int, batches: Callable[[int], Iterable[Any]], step: Callable[[Any], Step],
        validate: Callable[[int], dict[str, float]], score: Callable[[dict[str, float]], float],
        keep: Callable[[], Any], show: bool = True, stop: Callable[[int], bool] | None = None) -> Fitted:
    """The epoch loop of every training run.

    Each epoch: ``batches(epoch)`` (which also puts the model in training mode) feeds ``step``
    under a progress bar showing the running loss; then ``validate(epoch)`` gives the epoch's
    validation figures, recorded with the training loss and accuracy; the epoch whose record
    ``score`` rates highest (the last of equals) is the one ``keep`` copies. ``stop(epoch)``, when
    given, may end the run after an epoch (a time limit). ``show=False`` (the processes of a
    distributed run but the first) keeps it silent.
    """
    history, kept, best, best_epoch = History(show=show), None, -float("inf"), 0
    epoch = 0
    for epoch in range(1, epochs + 1):
        seen, loss_sum, correct = 0, 0.0, 0
        bar = progress(batches(epoch), steps, f"{description} {epoch}/{epochs}", show)
        for batch in bar:
            result = step(batch)
            seen += result.count
            loss_sum += result.loss * result.count
            correct = None if correct is None or result.correct is None else correct + result.correct
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
        accuracy = {} if correct is None else {"train_acc": correct / seen}
        history.add(epoch=epoch, train_loss=loss_sum / seen, **accuracy, **validate(epoch))
        rating = score(history.epochs[-1])
        if rating >= best:
            kept, best, best_epoch = keep(), rating, epoch
        if stop is not None and stop(epoch):
            break
    return Fitted(history, kept, best, best_epoch, epoch)


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, inputs: torch.Tensor, device: torch.device, batch_size: int = 1024,
                   description: str | None = None) -> torch.Tensor:
    """Logits of a classifier over a CPU tensor of inputs, in eval mode, batched; on the CPU.
    With ``description``, a progress bar shows the batches."""
    model.eval()
    starts: Any = range(0, len(inputs), batch_size)
    if description:
        starts = progress(starts, len(starts), description)
    outputs = [model(inputs[i : i + batch_size].to(device)).float().cpu() for i in starts]
    return torch.cat(outputs)
