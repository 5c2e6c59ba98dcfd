"""Calibration: the temperature that calibrates a classifier's logits, and how well calibrated
probabilities are (reliability bins, expected calibration error)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
