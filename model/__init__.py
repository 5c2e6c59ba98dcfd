"""Shared model code: architectures, the checkpoint format and the one preprocessing.

Knows nothing of HTTP or of training; both ``app`` and ``training`` build on it.
"""

from model.architectures import (
    ARCHITECTURES,
    DigitEnsemble,
    DigitNet,
    DigitSumNet,
    SequenceNet,
    build_model,
)
from model.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from model.preprocess import NoInkError, PreprocessConfig

__all__ = [
    "ARCHITECTURES",
    "Checkpoint",
    "CheckpointError",
    "DigitEnsemble",
    "DigitNet",
    "DigitSumNet",
    "NoInkError",
    "PreprocessConfig",
    "SequenceNet",
    "build_model",
    "load_checkpoint",
    "save_checkpoint",
]
