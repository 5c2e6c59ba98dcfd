"""The checkpoint format: weights plus everything needed to rebuild and trust the model.

A checkpoint is one ``torch.save`` file holding only tensors and plain values, so it loads with
``torch.load(weights_only=True)``, which refuses to run code a tampered file might carry:

    {"format": "digitserve-checkpoint/1", "state_dict": {...}, "metadata": {...}}

``metadata`` holds the architecture name and its constructor arguments (enough to rebuild the
network without any training code), the preprocessing parameters, the labels, a version, and
the provenance: data set and its checksum, hyper-parameters, test metrics, creation time, code
version. The SHA-256 of each file is kept beside it in ``SHA256SUMS`` (the ``sha256sum`` format)
and checked before the file is unpickled.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.architectures import build_model
from model.preprocess import PreprocessConfig

FORMAT = "digitserve-checkpoint/1"
MANIFEST = "SHA256SUMS"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, of the wrong format, or fails its checksum."""


@dataclass
class Checkpoint:
    """A loaded (or about to be saved) model with its metadata."""

    model: nn.Module
    metadata: dict[str, Any]
    sha256: str = ""
    path: Path | None = None

    @property
    def name(self) -> str:
        return str(self.metadata["name"])

    @functools.cached_property
    def preprocess(self) -> PreprocessConfig:
        """The preprocessing the model was trained with (read once: serving asks per request)."""
        return PreprocessConfig.from_dict(self.metadata["preprocess"])


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(directory: Path) -> dict[str, str]:
    """``SHA256SUMS`` in ``directory`` -> {file name: hex digest}."""
    manifest = directory / MANIFEST
    if not manifest.is_file():
        return {}
    entries: dict[str, str] = {}
    for line in manifest.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            entries[name.lstrip("*").strip()] = digest.lower()
    return entries


def write_manifest_entry(path: Path, digest: str) -> None:
    """Add or replace ``path``'s line in the ``SHA256SUMS`` beside it (kept sorted)."""
    entries = read_manifest(path.parent)
    entries[path.name] = digest
    lines = [f"{entries[name]}  {name}\n" for name in sorted(entries)]
    (path.parent / MANIFEST).write_text("".join(lines))


def save_checkpoint(model: nn.Module, metadata: dict[str, Any], path: str | os.PathLike[str]) -> str:
    """Write the checkpoint, record its SHA-256 in the manifest beside it, return the digest.

    Tensors are moved to the CPU and made contiguous so the file loads anywhere.
    """
    path = Path(path)
    for key in ("name", "architecture", "arguments", "preprocess", "version"):
        if key not in metadata:
            raise ValueError(f"checkpoint metadata needs {key!r}")
    # A JSON round trip keeps the metadata to plain values (weights_only refuses anything else)
    # and guarantees it can be shown as JSON, e.g. by the service's model listing.
    metadata = json.loads(json.dumps(metadata))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "state_dict": state, "metadata": metadata}, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()
    write_manifest_entry(path, digest)
    return digest


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    expected_sha256: str | None = None,
    map_location: str | torch.device = "cpu",
) -> Checkpoint:
    """Verify, load and rebuild a checkpoint; the model comes back in eval mode.

    The expected digest is ``expected_sha256`` or, by default, the file's line in the
    ``SHA256SUMS`` beside it; a file with neither is refused, as is one whose digest differs.
    The file is read once: the digest is taken over the very bytes that are then unpickled.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    expected = expected_sha256 or read_manifest(path.parent).get(path.name)
    if not expected:
        raise CheckpointError(f"no SHA-256 recorded for {path.name} in {path.parent / MANIFEST}")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected.lower():
        raise CheckpointError(f"checksum mismatch for {path}: expected {expected}, got {actual}")
    try:
        payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as error:  # an unpickling error names the offending global; keep it
        raise CheckpointError(f"cannot load {path} safely: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} file")
    metadata = payload["metadata"]
    try:
        model = build_model(metadata["architecture"], dict(metadata["arguments"]))
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path} does not rebuild its model: {error}") from error
    model.to(map_location).eval()
    return Checkpoint(model=model, metadata=metadata, sha256=actual, path=path)
