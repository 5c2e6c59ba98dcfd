"""The checkpoint format: round trip, checksums, refusing code, and the committed weights."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from model.architectures import ARCHITECTURES, DigitNet
from model.checkpoint import (
    MANIFEST,
    CheckpointError,
    load_checkpoint,
    read_manifest,
    save_checkpoint,
    sha256_file,
)
from model.preprocess import DEFAULT_CONFIG
from tests.conftest import WEIGHTS

REQUIRED_METADATA = {"name", "task", "architecture", "arguments", "version", "labels", "preprocess", "parameters",
                     "dataset", "hyperparameters", "metrics", "created", "code_version", "train_seconds"}


def _metadata() -> dict:
    return {"name": "tiny", "architecture": "DigitNet", "arguments": {"channels": [4, 8], "features": 16, "dropout": 0.1},
            "preprocess": DEFAULT_CONFIG.to_dict(), "version": "0.0.1", "labels": [str(d) for d in range(10)]}


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, DigitNet]:
    torch.manual_seed(0)
    model = DigitNet(channels=(4, 8), features=16, dropout=0.1).eval()
    model.temperature.fill_(1.7)
    path = tmp_path / "tiny.pt"
    save_checkpoint(model, _metadata(), path)
    return path, model


def test_round_trip_rebuilds_the_same_model(saved):
    path, model = saved
    loaded = load_checkpoint(path)
    assert isinstance(loaded.model, DigitNet) and not loaded.model.training
    assert loaded.metadata == _metadata()
    assert loaded.sha256 == sha256_file(path) == read_manifest(path.parent)["tiny.pt"]
    assert loaded.preprocess == DEFAULT_CONFIG
    images = torch.randn(5, 1, 28, 28)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.model(images), model(images))
    assert float(loaded.model.temperature) == pytest.approx(1.7)


def test_a_changed_byte_fails_the_checksum(saved):
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(path)


def test_truncated_file_fails_the_checksum(saved):
    path, _ = saved
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(path)


def test_missing_file_and_missing_checksum_are_refused(saved, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")
    path, _ = saved
    (path.parent / MANIFEST).unlink()
    with pytest.raises(CheckpointError, match="no SHA-256 recorded"):
        load_checkpoint(path)


class _Exploit:
    """A pickle that runs code when loaded without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_with_code_is_never_executed(tmp_path):
    """Even with a matching checksum (an attacker who can write the file can write the manifest),
    weights_only loading refuses the payload instead of running it."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"format": "digitserve-checkpoint/1", "payload": _Exploit(marker)}))
    with pytest.raises(CheckpointError, match="cannot load .* safely"):
        load_checkpoint(path, expected_sha256=sha256_file(path))
    assert not marker.exists()


def test_unknown_architecture_is_refused(tmp_path):
    path = tmp_path / "odd.pt"
    model = DigitNet(channels=(4, 8), features=16)
    save_checkpoint(model, {**_metadata(), "architecture": "Nope"}, path)
    with pytest.raises(CheckpointError, match="unknown architecture"):
        load_checkpoint(path)


@pytest.mark.parametrize("name", ["digit.pt", "sequence.pt", "digit_sum.pt", "fashion.pt", "line_reader.pt"])
def test_committed_weights_verify_and_rebuild_from_metadata_alone(name):
    assert name in read_manifest(WEIGHTS), f"{name} is not listed in weights/{MANIFEST}"
    checkpoint = load_checkpoint(WEIGHTS / name)
    assert REQUIRED_METADATA <= set(checkpoint.metadata)
    assert type(checkpoint.model) is ARCHITECTURES[checkpoint.metadata["architecture"]]
    assert checkpoint.metadata["parameters"] == sum(p.numel() for p in checkpoint.model.parameters())
    test_images = {"Fashion-MNIST": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
                   "MNIST": "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be"}
    dataset = checkpoint.metadata["dataset"]
    assert dataset["sha256"]["t10k-images-idx3-ubyte.gz"] == test_images[dataset["name"]]
