"""Shapes and the variable-length contract of the networks."""

from __future__ import annotations

import subprocess
import sys

import torch

from model.architectures import DigitNet, DigitSumNet, SequenceNet, pad_by_lengths
from tests.conftest import ROOT


def _small_sequence_net() -> SequenceNet:
    torch.manual_seed(0)
    return SequenceNet(channels=(4, 8), features=16, hidden=8).eval()


def test_sequences_of_different_lengths_batch_without_reading_padding():
    """A sequence's output is the same alone as in a batch padded to a longer sequence: its
    LSTM state is taken at its own last digit, not at the last padded step."""
    model = _small_sequence_net()
    lengths = torch.tensor([3, 11, 5])
    images = torch.randn(int(lengths.sum()), 1, 28, 28)
    with torch.inference_mode():
        batched = model(images, lengths)
        alone = [model(chunk, torch.tensor([len(chunk)])) for chunk in torch.split(images, lengths.tolist())]
    torch.testing.assert_close(batched, torch.cat(alone), rtol=1e-5, atol=1e-5)


def test_reading_precomputed_embeddings_equals_the_full_forward():
    model = _small_sequence_net()
    lengths = torch.tensor([4, 2])
    images = torch.randn(6, 1, 28, 28)
    with torch.inference_mode():
        full = model(images, lengths)
        read = model.read(pad_by_lengths(model.encoder(images), lengths), lengths)
    torch.testing.assert_close(full, read)


def test_output_shapes():
    with torch.inference_mode():
        assert DigitNet(channels=(4, 8), features=16).eval()(torch.randn(3, 1, 28, 28)).shape == (3, 10)
        logits, sums = DigitSumNet(channels=(4, 8), features=16).eval()(torch.randn(3, 1, 28, 28), torch.tensor([1, -5, 9]))
    assert logits.shape == (3, 10) and sums.shape == (3,)


def test_model_package_imports_neither_torchvision_nor_matplotlib():
    """The serving image ships without them."""
    code = ("import sys, model, model.architectures, model.checkpoint, model.preprocess; "
            "bad = [m for m in ('torchvision', 'matplotlib', 'training', 'app') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_fashion_net_gives_ten_calibrated_logits():
    from model.architectures import FashionNet, build_model

    torch.manual_seed(0)
    model = build_model("FashionNet", {"channels": [8, 16, 32], "features": 32, "dropout": 0.3}).eval()
    assert isinstance(model, FashionNet)
    images = torch.randn(5, 1, 28, 28)
    with torch.inference_mode():
        logits = model(images)
        model.temperature.fill_(2.0)
        halved = model(images)
    assert logits.shape == (5, 10)
    torch.testing.assert_close(halved, logits / 2)


def test_a_digit_ensemble_reads_the_mean_of_its_members_probabilities():
    """Its softmax is the members' mean distribution, sharpened or softened by its own temperature;
    each member keeps its own calibration."""
    from model.architectures import DigitEnsemble

    torch.manual_seed(0)
    ensemble = DigitEnsemble(members=3, channels=(4, 8), features=16).eval()
    ensemble.members[1].temperature.fill_(1.7)
    images = torch.randn(5, 1, 28, 28)
    with torch.inference_mode():
        mean = torch.stack([member(images).softmax(-1) for member in ensemble.members]).mean(0)
        torch.testing.assert_close(ensemble(images).softmax(-1), mean)
        ensemble.temperature.fill_(0.5)
        torch.testing.assert_close(ensemble(images).softmax(-1), (mean ** 2) / (mean ** 2).sum(-1, keepdim=True))
