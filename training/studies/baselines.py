"""The architectures of the original CNN vs RNN vs LSTM study, rebuilt in PyTorch.

Study-only networks (nothing serves them): two plain CNNs, a regularised CNN, and two recurrent
networks that read a 28x28 image as a sequence of 28 rows of 28 pixels. Our best CNNs, the
served ``DigitNet`` and ``FashionNet``, live in ``model.architectures``.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvMaxPool(nn.Module):
    """Two 3x3 convolutions (32, 64), each followed by 2x2 max pooling, then 128 -> 10."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class StridedConv(nn.Module):
    """Downsampling by stride-2 convolutions instead of pooling (32, 64, 64), then 128 -> 10."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, 10),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class RegularisedCNN(nn.Module):
    """ConvMaxPool with batch norm after each convolution and dropout before each dense layer;
    the L2 penalty is the optimizer's weight decay (see ``architectures.BASELINES``)."""

    def __init__(self, dropout: float = 0.3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(64 * 5 * 5, 128), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(128, 10),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class RowReader(nn.Module):
    """An RNN or LSTM that reads the image top to bottom, one row (28 pixels) per step.

    ``readout="last"`` classifies from the last step's hidden state, the original study's reader.
    ``readout="mean"`` averages every step's output first: an item's evidence sits in its middle
    rows, and the average reaches it without carrying it through the blank rows below. A
    bidirectional reader also reads bottom to top, so each step sees the whole garment.
    ``embed`` passes each row through a learned ``28 -> embed`` layer (with a ReLU) before the
    recurrence, so the cell reads features of the row (edges, widths) rather than raw pixels;
    ``dropout`` applies between the recurrent layers and before the classifier.
    """

    def __init__(self, cell: str, hidden: int = 128, layers: int = 2, bidirectional: bool = False,
                 readout: str = "last", embed: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        if readout not in ("last", "mean"):
            raise ValueError(f"readout must be 'last' or 'mean', not {readout!r}")
        recurrent = {"rnn": nn.RNN, "lstm": nn.LSTM}[cell]
        self.embed = nn.Sequential(nn.Linear(28, embed), nn.ReLU()) if embed else nn.Identity()
        self.recurrent = recurrent(embed or 28, hidden, num_layers=layers, batch_first=True,
                                   bidirectional=bidirectional, dropout=dropout if layers > 1 else 0.0)
        self.readout = readout
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        rows = images.squeeze(1)  # [N, 1, 28, 28] -> [N, 28 steps, 28 pixels]
        outputs, _ = self.recurrent(self.embed(rows))
        return self.head(self.dropout(outputs.mean(1) if self.readout == "mean" else outputs[:, -1]))
