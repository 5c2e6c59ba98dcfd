"""What every training run shares: device, seeding, progress, history, calibration, provenance."""

from __future__ import annotations

import json
import platform
import random
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
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


def progress(iterable: Any, total: int, description: str) -> tqdm:
    return tqdm(iterable, total=total, desc=description, unit="batch", dynamic_ncols=True, leave=False)


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

    def add(self, **values: float) -> None:
        self.epochs.append({k: float(v) for k, v in values.items()})
        parts = "  ".join(f"{k} {v:.4f}" for k, v in self.epochs[-1].items() if k != "epoch")
        tqdm.write(f"epoch {int(values['epoch'])}: {parts}")


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


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Temperature minimising the negative log-likelihood on held-out logits (Guo et al., 2017)."""
    logits = logits.detach().clone()  # may come from inference mode
    log_t = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def calibration_bins(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> list[tuple[float, float, float, int]]:
    """Per equal-width confidence bin: (lower edge, mean confidence, accuracy, count); the two
    means are NaN in an empty bin. What reliability diagrams draw and ECE sums."""
    confidence, predicted = probabilities.max(dim=1)
    correct = predicted.eq(labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    out = []
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        count = int(inside.sum())
        out.append((float(low), float(confidence[inside].mean()) if count else float("nan"),
                    float(correct[inside].mean()) if count else float("nan"), count))
    return out


def expected_calibration_error(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE over equal-width confidence bins: sum of |accuracy - confidence| weighted by bin share."""
    total = len(labels)
    return sum(count / total * abs(accuracy - confidence)
               for _, confidence, accuracy, count in calibration_bins(probabilities, labels, bins) if count)


def code_version() -> str:
    """The git commit the code was run from (``-dirty`` when it had local changes)."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "model", "training"], cwd=root, capture_output=True, text=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance(device: torch.device, started: float) -> dict[str, Any]:
    """Where and when a checkpoint was made, and how long training took."""
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "torch_version": str(torch.__version__),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "cpu_threads": torch.get_num_threads(),
        "host": platform.machine(),
        "train_seconds": round(time.time() - started, 1),
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
