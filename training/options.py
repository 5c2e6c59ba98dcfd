"""The options every training run takes, as one typed object built by the CLI."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

Precision = Literal["fp32", "bf16"]

@dataclass
class RunOptions:
    out: Path
    data_dir: str | None = None
    epochs: int = 12
    seed: int = 0  # initialisation, batch order, augmentation
    split_seed: int = 0  # classifiers: which training images are held out for validation (fixed, so seeds share it)
    device: str = "auto"
    label_noise: float = 0.0
    loss: str = "bce"  # sequence model: "bce", or "gce" (generalized cross-entropy, robust to label noise)
    batch_size: int = 128
    lr: float = 0.05
    val_size: int = 5000
    limit: int | None = None  # use only this many training images (smoke tests)
    init_from: Path | None = None  # a DigitNet checkpoint whose encoder starts the model
    threads: int | None = None
    steps_per_epoch: int | None = None  # line reader: batches per epoch (default 1,500)
    time_limit: float | None = None  # line reader: seconds after which no new epoch starts
    workers: int | None = None  # line reader: processes rendering strips (default: CPUs - 1)
    ema_decay: float = 0.999
    precision: Precision = "fp32"  # line reader: "bf16" trains under bfloat16 autocast (weights and optimiser stay fp32)
    reshape_digits: bool = False  # line reader: each digit through the digit model's affine augmentation first
    mnist_share: float | None = None  # line reader: share of plain MNIST-made strips in the mix (default: the style's)
    ballpoint_share: float | None = None  # line reader: share written with a ballpoint (default: the style's)
    tilt_share: float | None = None  # line reader: share rotated as if captured askew (default: the style's)
    digit_scale: tuple[float, float] | None = None  # line reader: range of each digit's size against the row's
    anchor: float = 0.0  # line reader, continuing (--init-from): weight of ``line_reader.anchor_loss``
    teacher: Path | None = None  # classifiers: a checkpoint whose outputs the run learns from (distillation)
    distill_weight: float = 0.9  # classifiers, with a teacher: share of the loss that is the teacher's, the rest the labels'

    @property
    def artefacts(self) -> Path:
        """Where the run's plots and metrics go: beside the checkpoint, in a folder of its name."""
        return self.out.with_suffix("")

    def hyperparameters(self) -> dict[str, Any]:
        """The options as plain values, for the checkpoint's metadata (no paths of this machine)."""
        values = asdict(self)
        for key in ("out", "data_dir", "init_from", "teacher"):
            values.pop(key)
        values["init_from"] = self.init_from.name if self.init_from else None
        values["teacher"] = self.teacher.name if self.teacher else None
        return values
