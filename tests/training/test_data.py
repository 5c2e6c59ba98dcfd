"""MNIST and Fashion-MNIST reading, the validation hold-out, label noise, augmentation and the
sequence task."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from training.data import (
    FASHION_MNIST,
    DataError,
    flip_labels,
    load_split,
    read_idx,
    sample_sequences,
    train_val_indices,
)


def test_read_idx_gzipped_and_plain(tmp_path):
    values = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    payload = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in values.shape) + values.tobytes()
    (tmp_path / "a-idx3-ubyte").write_bytes(payload)
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(payload))
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx3-ubyte"), values)
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx3-ubyte.gz"), values)
    (tmp_path / "bad").write_bytes(payload[:-1])
    with pytest.raises(DataError, match="header says"):
        read_idx(tmp_path / "bad")


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_split("test", tmp_path / "nowhere")


def test_real_mnist_splits(mnist_dir):
    test = load_split("test", mnist_dir)
    train = load_split("train", mnist_dir)
    assert test.images.shape == (10000, 28, 28) and train.images.shape == (60000, 28, 28)
    assert np.bincount(test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert test.labels[:8].tolist() == [7, 2, 1, 0, 4, 1, 4, 9]
    assert train.checksums["train-labels-idx1-ubyte.gz"] == "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203"


def test_real_fashion_mnist_splits(fashion_dir, monkeypatch):
    test = load_split("test", fashion_dir, FASHION_MNIST)
    assert test.images.shape == (10000, 28, 28) and np.bincount(test.labels).tolist() == [1000] * 10
    assert [FASHION_MNIST.labels[i] for i in test.labels[:4]] == ["Ankle boot", "Pullover", "Trouser", "Trouser"]
    assert test.checksums["t10k-labels-idx1-ubyte.gz"] == "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"
    # Found through its own variable, never through MNIST's.
    monkeypatch.setenv(FASHION_MNIST.env, str(fashion_dir))
    monkeypatch.setenv("MNIST_DATA_DIR", "/nowhere")
    assert load_split("test", None, FASHION_MNIST).checksums == test.checksums


def test_garment_augmentation_mirrors_jitters_and_erases_per_image():
    import torch

    from training.augment import AffineAugment, GarmentAugment

    images = torch.zeros(64, 1, 28, 28)
    images[:, :, 4:24, 2:12] = 1.0  # a block on the left half, background 0
    still = GarmentAugment(affine=AffineAugment(0.0, (1.0, 1.0), 0.0, 0.0), erase=0.0)
    out = still(images, torch.Generator().manual_seed(0))
    mirrored = out[:, 0, 4:24, 16:26].mean((1, 2)) > 0.99
    kept = out[:, 0, 4:24, 2:12].mean((1, 2)) > 0.99
    assert (mirrored ^ kept).all() and 20 < int(mirrored.sum()) < 44  # each image one way or the other
    erased = GarmentAugment(flip=0.0, affine=AffineAugment(0.0, (1.0, 1.0), 0.0, 0.0), erase=1.0, erase_area=(0.1, 0.1))
    garments = torch.ones(16, 1, 28, 28)
    garments[:, :, 0, 0] = 0.0  # the background level (the image's minimum) is 0
    out = erased(garments, torch.Generator().manual_seed(0))
    holes = (out == 0).sum((1, 2, 3))  # one rectangle of ~10% of 784 pixels, filled with background
    assert out.shape == (16, 1, 28, 28) and ((holes > 40) & (holes < 120)).all()
    torch.testing.assert_close(out, erased(garments, torch.Generator().manual_seed(0)))  # seeded: reproducible


def test_validation_hold_out_is_disjoint_and_seeded():
    fit, val = train_val_indices(1000, 100, seed=3)
    assert len(fit) == 900 and len(val) == 100 and not set(fit) & set(val)
    np.testing.assert_array_equal(val, train_val_indices(1000, 100, seed=3)[1])


def test_label_noise_flips_the_asked_share_to_other_classes():
    labels = np.random.default_rng(0).integers(0, 10, 20000)
    noisy = flip_labels(labels, 0.4, 10, seed=1)
    changed = noisy != labels
    assert changed.mean() == pytest.approx(0.4, abs=0.01)
    assert noisy.min() >= 0 and noisy.max() <= 9
    binary = np.zeros(1000, dtype=np.int64)
    assert flip_labels(binary, 0.2, 2, seed=1).mean() == pytest.approx(0.2, abs=0.04)
    np.testing.assert_array_equal(flip_labels(labels, 0.0, 10, seed=1), labels)


def test_sequences_follow_the_study():
    digit_labels = np.random.default_rng(0).integers(0, 10, 5000)
    seqs = sample_sequences(digit_labels, 4000, seed=5)
    assert seqs.lengths.min() >= 3 and seqs.lengths.max() <= 30
    assert seqs.lengths.mean() == pytest.approx(10, abs=0.2) and seqs.lengths.std() == pytest.approx(3, abs=0.2)
    offsets = seqs.offsets()
    for i in range(50):
        digits = digit_labels[seqs.indices[offsets[i] : offsets[i + 1]]]
        assert len(digits) == seqs.lengths[i]
        assert seqs.labels[i] == int(4 in digits)
