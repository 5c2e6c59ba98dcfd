"""The served networks. Each takes its constructor arguments as plain values so that a checkpoint
can carry them and rebuild the model by itself (``build_model``).

Inputs are the normalised [N, 1, 28, 28] tensors of ``model.preprocess``, except for
``LineReader``, which reads a whole strip as one line image (``model.line.strip_to_line``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence


def _conv(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]


def _dense(in_features: int, features: int, dropout: float) -> nn.Sequential:
    """Flatten, then a fully connected layer with batch norm, ReLU and dropout."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, features, bias=False),
        nn.BatchNorm1d(features),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
    )


class DigitEncoder(nn.Module):
    """The LeNet-style feature extractor shared by all three networks.

    Two stages of two 3x3 convolutions with batch norm, each followed by 2x2 max pooling and
    dropout, then a fully connected layer: 28x28 -> ``features`` values.
    """

    def __init__(self, channels: tuple[int, int] = (32, 64), features: int = 256, dropout: float = 0.25) -> None:
        super().__init__()
        c1, c2 = channels
        self.conv = nn.Sequential(
            *_conv(1, c1),
            *_conv(c1, c1),
            nn.MaxPool2d(2),
            nn.Dropout(dropout / 2),
            *_conv(c1, c2),
            *_conv(c2, c2),
            nn.MaxPool2d(2),
            nn.Dropout(dropout / 2),
        )
        self.fc = _dense(c2 * 7 * 7, features, dropout)
        self.features = features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(images))


class DigitNet(nn.Module):
    """Single-digit classifier: encoder + linear layer -> 10 logits.

    ``temperature`` (a buffer, 1 until calibrated) divides the logits: temperature scaling fitted
    on the validation split after training, so that probabilities are calibrated.
    """

    def __init__(self, channels: tuple[int, int] = (32, 64), features: int = 256, dropout: float = 0.25) -> None:
        super().__init__()
        self.encoder = DigitEncoder(tuple(channels), features, dropout)
        self.classifier = nn.Linear(features, 10)
        self.register_buffer("temperature", torch.ones(()))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Calibrated logits [N, 10]."""
        return self.classifier(self.encoder(images)) / self.temperature


class DigitEnsemble(nn.Module):
    """Several DigitNets trained by one recipe from different seeds, read as one classifier.

    Each member errs on different digits, so the mean of their calibrated probabilities is right
    more often than any member and better calibrated (a deep ensemble, Lakshminarayanan et al.
    2017). ``forward`` returns the log of that mean divided by the ensemble's own ``temperature``
    (fitted on the members' shared validation split), so callers use it exactly like a DigitNet:
    its softmax is the calibrated distribution.
    """

    def __init__(self, members: int = 3, channels: tuple[int, int] = (32, 64), features: int = 256,
                 dropout: float = 0.25) -> None:
        super().__init__()
        if members < 1:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(DigitNet(channels, features, dropout) for _ in range(members))
        self.register_buffer("temperature", torch.ones(()))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Calibrated logits [N, 10]: the log of the members' mean probabilities, over ``temperature``."""
        log_probabilities = torch.stack([member(images).log_softmax(dim=-1) for member in self.members])
        mean = torch.logsumexp(log_probabilities, dim=0) - math.log(len(self.members))
        return mean / self.temperature


class SequenceNet(nn.Module):
    """CNN-LSTM: P(a sequence of digit images contains a 4).

    The encoder embeds every digit; an LSTM reads the embeddings in order, with sequences of
    different lengths packed so that each one's final state is its own last digit's, never a
    padding step; a linear head turns the final hidden state into one logit.
    """

    def __init__(
        self,
        channels: tuple[int, int] = (32, 64),
        features: int = 256,
        dropout: float = 0.25,
        hidden: int = 128,
    ) -> None:
        super().__init__()
        self.encoder = DigitEncoder(tuple(channels), features, dropout)
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def read(self, embeddings: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Padded embeddings [B, T, F] and lengths [B] -> logits [B] (the part after the CNN)."""
        packed = pack_padded_sequence(embeddings, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)
        return self.head(hidden[-1]).squeeze(-1)

    def forward(self, images: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """All digits of the batch concatenated [sum(lengths), 1, 28, 28] -> logits [B].

        The CNN runs once over every digit of every sequence (one big batch), then the
        embeddings are scattered into a padded [B, T, F] tensor for the LSTM.
        """
        embeddings = self.encoder(images)
        return self.read(pad_by_lengths(embeddings, lengths), lengths)


def pad_by_lengths(flat: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[sum(lengths), F] -> zero-padded [B, max(lengths), F], sequence by sequence in order."""
    lengths_list = [int(n) for n in lengths.tolist()]
    return nn.utils.rnn.pad_sequence(list(torch.split(flat, lengths_list)), batch_first=True)


class DigitSumNet(nn.Module):
    """Reads a digit and adds an integer to it.

    image -> encoder -> 10 digit logits; [softmax(sharpness * logits), integer] -> one linear
    layer -> sum. Trained jointly: cross-entropy on the digit, mean squared error on the sum. A
    linear head can represent the exact rule (weights 0..9 on the probabilities, 1 on the
    integer), which is why it extrapolates far beyond the integers seen in training. The
    sharpened softmax is nearly one-hot whenever the digit is clear, so an uncertain second
    guess does not drag the sum off by a fraction of the two digits' difference.
    """

    def __init__(
        self,
        channels: tuple[int, int] = (32, 64),
        features: int = 256,
        dropout: float = 0.25,
        sharpness: float = 8.0,
    ) -> None:
        super().__init__()
        self.encoder = DigitEncoder(tuple(channels), features, dropout)
        self.classifier = nn.Linear(features, 10)
        self.adder = nn.Linear(11, 1)
        self.sharpness = sharpness

    def forward(self, images: torch.Tensor, numbers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images [N, 1, 28, 28] and integers [N] -> (digit logits [N, 10], sums [N])."""
        logits = self.classifier(self.encoder(images))
        inputs = torch.cat([(logits * self.sharpness).softmax(dim=-1), numbers.to(logits.dtype).unsqueeze(-1)], dim=-1)
        return logits, self.adder(inputs).squeeze(-1)


class FashionNet(nn.Module):
    """Garment classifier for Fashion-MNIST: our best CNN of the architectures study.

    Three stages of two 3x3 convolutions with batch norm (28x28, 14x14, 7x7), max pooling and
    light dropout after each, then a fully connected layer with batch norm and dropout, and a
    linear layer -> 10 logits. The third stage costs little (it runs at 7x7) and is what lifts
    Fashion-MNIST, whose classes differ by texture and shape more than digits do.
    ``temperature`` (a buffer, fitted on validation) divides the logits, as in ``DigitNet``.
    """

    def __init__(self, channels: tuple[int, int, int] = (32, 64, 128), features: int = 256, dropout: float = 0.3) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.conv = nn.Sequential(
            *_conv(1, c1), *_conv(c1, c1), nn.MaxPool2d(2), nn.Dropout(dropout / 3),
            *_conv(c1, c2), *_conv(c2, c2), nn.MaxPool2d(2), nn.Dropout(dropout / 3),
            *_conv(c2, c3), *_conv(c3, c3), nn.MaxPool2d(2), nn.Dropout(dropout / 3),
        )
        self.fc = _dense(c3 * 3 * 3, features, dropout)
        self.classifier = nn.Linear(features, 10)
        self.register_buffer("temperature", torch.ones(()))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Calibrated logits [N, 10]."""
        return self.classifier(self.fc(self.conv(images))) / self.temperature


class LineReader(nn.Module):
    """Reads a whole line of handwriting: CNN + bidirectional LSTM, trained with CTC (CRNN, Shi,
    Bai & Yao 2015), so a strip is never cut into digits by rule.

    Input: line images [N, 1, 32, W] (``model.line.strip_to_line``), zero padded on the right,
    and their widths. Four stages of 3x3 convolutions with batch norm: the first two pooled 2x2,
    the last two pooled in height only, so every 4 columns become one step; the remaining 2 rows
    are flattened into the step's features. Two BiLSTM layers read the steps (packed, so padding
    never reaches a line's own states) and a linear layer gives 11 log-probabilities per step:
    the digits 0-9 and the CTC blank (index 10).
    """

    def __init__(self, channels: tuple[int, int, int, int] = (32, 64, 128, 192), hidden: int = 192,
                 layers: int = 2, dropout: float = 0.2, classes: int = 11) -> None:
        super().__init__()
        c1, c2, c3, c4 = channels
        self.conv = nn.Sequential(
            *_conv(1, c1), nn.MaxPool2d(2),
            *_conv(c1, c2), nn.MaxPool2d(2),
            *_conv(c2, c3), *_conv(c3, c3), nn.MaxPool2d((2, 1)),
            *_conv(c3, c4), *_conv(c4, c4), nn.MaxPool2d((2, 1)),
        )
        self.project = nn.Sequential(nn.Linear(2 * c4, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.lstm = nn.LSTM(hidden, hidden, num_layers=layers, bidirectional=True, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.classify = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, classes))

    def forward(self, lines: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """Lines [N, 1, 32, W] and each line's step count [N] -> log-probabilities [N, W/4, 11]
        (steps past a line's own count are padding)."""
        features = self.conv(lines)  # [N, C, 2, W/4]
        n, c, h, t = features.shape
        features = self.project(features.permute(0, 3, 1, 2).reshape(n, t, c * h))
        packed = pack_padded_sequence(features, steps.clamp(max=t).cpu(), batch_first=True, enforce_sorted=False)
        states, _ = self.lstm(packed)
        states, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=t)
        return self.classify(states).log_softmax(dim=-1)


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "DigitNet": DigitNet,
    "DigitEnsemble": DigitEnsemble,
    "SequenceNet": SequenceNet,
    "DigitSumNet": DigitSumNet,
    "FashionNet": FashionNet,
    "LineReader": LineReader,
}


def build_model(architecture: str, arguments: dict[str, Any]) -> nn.Module:
    """Instantiate a network from its name and constructor arguments (as stored in a checkpoint)."""
    try:
        cls = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}") from None
    return cls(**arguments)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
