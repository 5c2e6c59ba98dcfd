"""Every training task in one table: its name on the command line, the architecture of the
checkpoints it writes (how ``evaluate`` finds the task of a checkpoint), how it trains and
evaluates, and its training defaults (the CLI's, and the studies' that retrain a model)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model.checkpoint import Checkpoint
from training import digit, digit_sum, fashion, line_reader, sequence
from training.ensemble import EnsembleSpec
from training.options import RunOptions


@dataclass(frozen=True)
class Task:
    name: str
    architecture: str
    train: Callable[[RunOptions], Path]
    evaluate: Callable[[Checkpoint, str | None, torch.device], dict[str, Any]]
    epochs: int
    lr: float
    batch_size: int = 128
    distributed: bool = False  # trains under torchrun (training.distributed)
    ensemble: EnsembleSpec | None = None  # ``python -m training ensemble`` joins this task's checkpoints
    distils: bool = False  # can learn from a teacher checkpoint (``--teacher``)


TASKS: dict[str, Task] = {task.name: task for task in (
    Task("digit", "DigitNet", digit.TASK.train, digit.TASK.evaluate_command, epochs=40, lr=0.05, distributed=True,
         ensemble=digit.ENSEMBLE, distils=True),
    Task("sequence", "SequenceNet", sequence.train, sequence.evaluate_command, epochs=8, lr=2e-3),
    Task("digit-sum", "DigitSumNet", digit_sum.train, digit_sum.evaluate_command, epochs=3, lr=1e-3),
    Task("fashion", "FashionNet", fashion.TASK.train, fashion.TASK.evaluate_command, epochs=24, lr=0.05, distributed=True,
         distils=True),
    Task("line-reader", "LineReader", line_reader.train, line_reader.evaluate_command, epochs=10, lr=2e-3, distributed=True),
)}


def for_architecture(architecture: str) -> Task:
    """The task whose checkpoints have this architecture (``python -m training evaluate``)."""
    return next(task for task in TASKS.values()
                if architecture in (task.architecture, task.ensemble and task.ensemble.architecture))
