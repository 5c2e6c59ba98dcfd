"""The fastest exact form of a trained network for serving, chosen by measurement.

On this kind of CPU (see docs/performance.md) two changes double the digit CNN's throughput and
change no prediction: folding each BatchNorm into the convolution before it (an eval-time
identity) and storing the weights channels-last, which oneDNN's convolutions prefer. Both keep
float32 arithmetic, so outputs match the checkpoint to rounding (tests/model/test_inference.py).
Large batches are cut into chunks: past a few dozen images the activations fall out of cache and
digits per second drop again.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

from model.architectures import DigitEncoder, DigitEnsemble, FashionNet, LineReader

# Images per forward pass of the encoder; measured best on 2 CPU cores (docs/performance.md).
ENCODER_CHUNK = 128


class ChunkedEncoder(nn.Module):
    """An encoder that runs large batches in chunks of ``chunk`` images."""

    def __init__(self, encoder: nn.Module, chunk: int) -> None:
        super().__init__()
        self.inner, self.chunk = encoder, chunk
        self.features = getattr(encoder, "features", None)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if len(images) <= self.chunk:
            return self.inner(images)
        return torch.cat([self.inner(part) for part in images.split(self.chunk)])


def _compile_encoder(encoder: nn.Module, device: torch.device, example_shape: tuple[int, ...] = (2, 1, 28, 28)) -> nn.Module:
    """The encoder (or a whole single-input CNN) with every Conv-BatchNorm pair folded into one
    convolution, channels-last on the CPU, traced and frozen by TorchScript: one call that runs in
    C++ without holding the GIL, so a busy event loop cannot stall it between layers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fx and the tracer warn about what they need not see into
        folded = fuse(encoder)
        example = torch.zeros(*example_shape, device=device)
        if device.type == "cpu":
            folded = folded.to(memory_format=torch.channels_last)
            example = example.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            compiled = torch.jit.freeze(torch.jit.trace(folded, example))
    if hasattr(encoder, "features"):
        compiled.features = encoder.features
    return compiled


def for_inference(model: nn.Module, device: torch.device, chunk: int = ENCODER_CHUNK) -> nn.Module:
    """A copy of ``model`` in its serving form on ``device``: eval mode, BatchNorm folded into the
    convolutions, channels-last weights on the CPU, large batches chunked. The checkpoint's own
    module is left untouched (its state_dict is what the checksum vouches for)."""
    served = copy.deepcopy(model).eval().to(device)
    if isinstance(served, FashionNet):  # one image in, logits out: the whole network compiles
        return ChunkedEncoder(_compile_encoder(served, device), chunk)
    if isinstance(served, DigitEnsemble):  # each member in its own serving form
        served.members = nn.ModuleList(for_inference(member, device, chunk) for member in served.members)
    if isinstance(served, LineReader):  # the convolutions compile (any width); the LSTM stays eager
        served.conv = _compile_encoder(served.conv, device, (1, 1, 32, 64))
    for name, child in list(served.named_children()):
        if isinstance(child, DigitEncoder):
            setattr(served, name, ChunkedEncoder(_compile_encoder(child, device), chunk))
    for parameter in served.parameters():
        parameter.requires_grad_(False)
    return served
