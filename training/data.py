"""MNIST and Fashion-MNIST from their IDX files, the sequence task built on MNIST, and label noise.

A data set's directory is ``--data-dir``, else its environment variable (``$MNIST_DATA_DIR``,
``$FASHION_MNIST_DATA_DIR``), else where a system package installs it (Debian's
``dataset-fashion-mnist``): the four IDX files, gzipped or not (``../shared/data/mnist`` on our
machines). With none of these, torchvision downloads the set into ``~/.cache/digitserve`` for
users who are online, and the same IDX reader is used on its files.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.preprocess import (
    DEFAULT_CONFIG,
    FASHION_CONFIG,
    PreprocessConfig,
    normalise,
    preprocess_digits,
)


@dataclass(frozen=True)
class Dataset:
    """A 28x28, ten-class IDX data set: where to find it and how its images are normalised."""

    name: str
    env: str  # environment variable naming its directory
    torchvision_class: str  # the torchvision dataset that downloads it
    labels: tuple[str, ...]
    preprocess: PreprocessConfig
    system_dirs: tuple[Path, ...] = ()  # where an OS package installs it


MNIST = Dataset("MNIST", "MNIST_DATA_DIR", "MNIST", tuple(str(d) for d in range(10)), DEFAULT_CONFIG)
FASHION_MNIST = Dataset(
    "Fashion-MNIST", "FASHION_MNIST_DATA_DIR", "FashionMNIST",
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    FASHION_CONFIG, (Path("/usr/share/datasets/fashion-mnist"),),
)
DATA_DIR_ENV = MNIST.env
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DOWNLOAD_ROOT = Path.home() / ".cache" / "digitserve"


class DataError(RuntimeError):
    """The data set is missing or malformed."""


@dataclass(frozen=True)
class Split:
    """One MNIST split: raw uint8 images [N, 28, 28], int64 labels [N], and file checksums."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    checksums: dict[str, str]

    def __len__(self) -> int:
        return len(self.labels)


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None, dataset: Dataset = MNIST) -> Path | None:
    """The directory given, else the data set's environment variable, else its system-wide
    install, else None (meaning: download)."""
    chosen = data_dir or os.environ.get(dataset.env)
    if chosen:
        return Path(chosen)
    return next((d for d in dataset.system_dirs if d.is_dir()), None)


def _find(directory: Path, stem: str, dataset: Dataset) -> Path:
    raw = directory / dataset.torchvision_class / "raw"
    for candidate in (directory / f"{stem}.gz", directory / stem, raw / f"{stem}.gz", raw / stem):
        if candidate.is_file():
            return candidate
    raise DataError(f"{stem}(.gz) not found in {directory}")


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a numpy array of its declared shape (uint8 data)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    array = np.frombuffer(data, dtype=np.uint8, offset=offset)
    if array.size != int(np.prod(shape)):
        raise DataError(f"{path}: header says {shape}, file holds {array.size} values")
    return array.reshape(shape)


def _download(root: Path, dataset: Dataset) -> Path:
    """Fetch the data set with torchvision (only when no data directory is given)."""
    import torchvision.datasets

    for train in (True, False):
        getattr(torchvision.datasets, dataset.torchvision_class)(str(root), train=train, download=True)
    return root / dataset.torchvision_class / "raw"


def load_split(name: str, data_dir: str | os.PathLike[str] | None = None, dataset: Dataset = MNIST) -> Split:
    """Load the ``train`` or ``test`` split of MNIST (or of ``dataset``)."""
    directory = resolve_data_dir(data_dir, dataset)
    if directory is None:
        directory = _download(DOWNLOAD_ROOT, dataset)
    if not directory.is_dir():
        raise DataError(f"{dataset.name} data directory {directory} does not exist")
    image_file, label_file = (_find(directory, stem, dataset) for stem in SPLIT_FILES[name])
    images, labels = read_idx(image_file), read_idx(label_file)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{image_file.name} and {label_file.name} do not match")
    checksums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (image_file, label_file)}
    return Split(name, images, labels.astype(np.int64), checksums)


def preprocess_split(images: np.ndarray, config: PreprocessConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Raw 28x28 images -> the float32 arrays serving would produce from the same pictures.

    Every training and evaluation image goes through ``model.preprocess`` (with the data set's
    config) so that the networks learn exactly the normalisation the service applies to uploads.
    """
    if len(images) == 0:
        return np.empty((0, config.canvas, config.canvas), dtype=np.float32)
    chunks = range(0, len(images), 8192)  # bounds the float copies of a 60,000-image split
    return np.concatenate([preprocess_digits(images[i : i + 8192].astype(np.float32) / 255.0, config) for i in chunks])


def train_val_indices(count: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, seeded hold-out of the training split for model selection."""
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[val_size:]), np.sort(order[:val_size])


def flip_labels(labels: np.ndarray, rate: float, num_classes: int, seed: int) -> np.ndarray:
    """Replace ``rate`` of the labels by a different, uniformly drawn class (the weak-supervision
    experiment); for two classes that is flipping 0 <-> 1."""
    if not 0.0 <= rate < 1.0:
        raise ValueError("label noise rate must be in [0, 1)")
    rng = np.random.default_rng(seed)
    noisy = labels.copy()
    chosen = rng.random(len(labels)) < rate
    offsets = rng.integers(1, num_classes, size=int(chosen.sum()))
    noisy[chosen] = (labels[chosen] + offsets) % num_classes
    return noisy


@dataclass(frozen=True)
class Sequences:
    """Sequences of digit indices into a split: ``lengths`` [S], the indices concatenated
    [sum(lengths)], and whether each sequence contains a 4."""

    lengths: np.ndarray
    indices: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.lengths)

    def offsets(self) -> np.ndarray:
        return np.concatenate(([0], np.cumsum(self.lengths)))


def sample_sequences(
    digit_labels: np.ndarray,
    count: int,
    seed: int,
    mean_length: float = 10.0,
    std_length: float = 3.0,
    min_length: int = 3,
    max_length: int = 30,
) -> Sequences:
    """Draw sequences as in the original study: lengths from N(10, 3) rounded and clipped to
    3..30, digits uniformly from the given pool, label = the sequence contains a 4."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.rint(rng.normal(mean_length, std_length, count)), min_length, max_length).astype(np.int64)
    indices = rng.integers(0, len(digit_labels), size=int(lengths.sum()))
    has_four = digit_labels[indices] == 4
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    labels = np.logical_or.reduceat(has_four, offsets[:-1]).astype(np.int64)
    return Sequences(lengths, indices, labels)


@dataclass(frozen=True)
class DigitData:
    """Preprocessed, normalised digit tensors [N, 1, 28, 28] with their labels."""

    inputs: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_split(cls, split: Split, indices: np.ndarray | None = None, config: PreprocessConfig = DEFAULT_CONFIG) -> DigitData:
        images = split.images if indices is None else split.images[indices]
        labels = split.labels if indices is None else split.labels[indices]
        return cls(normalise(preprocess_split(images, config), config), torch.as_tensor(labels))


@dataclass(frozen=True)
class Prepared:
    """Everything a training run reads: both splits, and the training split cut into the part
    that is fitted and the part held out for model selection."""

    train: Split
    test: Split
    fit: DigitData
    val: DigitData
    fit_indices: np.ndarray  # which training images ``fit`` holds
    dataset: Dataset = MNIST

    def record(self) -> dict[str, Any]:
        """The data set as a checkpoint's metadata names it."""
        return {"name": self.dataset.name, "sha256": {**self.train.checksums, **self.test.checksums}}

    def test_data(self) -> DigitData:
        """The whole test split, preprocessed."""
        return DigitData.from_split(self.test, config=self.dataset.preprocess)


def prepare(data_dir: str | None, val_size: int, seed: int, limit: int | None = None, dataset: Dataset = MNIST) -> Prepared:
    """Load a data set and split its training part; ``limit`` keeps only that many images (smoke runs)."""
    train, test = load_split("train", data_dir, dataset), load_split("test", data_dir, dataset)
    fit_idx, val_idx = train_val_indices(len(train), val_size, seed)
    if limit:
        fit_idx, val_idx = fit_idx[:limit], val_idx[: max(limit // 4, 1)]
    config = dataset.preprocess
    return Prepared(train, test, DigitData.from_split(train, fit_idx, config), DigitData.from_split(train, val_idx, config), fit_idx,
                    dataset)
