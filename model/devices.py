"""Where the networks run: one rule for training and serving alike."""

from __future__ import annotations

import torch


def select_device(choice: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` fails loudly when there is none."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {choice!r} asked for, but CUDA is not available")
    return torch.device(choice)
