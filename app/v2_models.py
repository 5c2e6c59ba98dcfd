"""The served models as Open Inference Protocol models: the tensors each takes and gives, and how a
request's tensors go through the same handlers as the upload routes (same decoding, limits,
batching and metrics).

Images come one of two ways, one per request: encoded (``BYTES``, one PNG/JPEG/... per element,
decoded and preprocessed as uploads are) or already preprocessed (``FP32`` ``[-1, 1, 28, 28]``,
normalised as in training: (ink - mean) / std, the mean and std in the model's metadata).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.deps import Serving
from app.failures import RequestFailed
from app.handlers import Images, Upload
from app.handlers.digit_sum import check_number
from app.oip import Tensor
from model.preprocess import PreprocessConfig

CANVAS = 28


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1: any size

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


Run = Callable[[dict[str, Tensor], Serving, str], Awaitable[list[Tensor]]]


@dataclass(frozen=True)
class OipModel:
    """One model as the protocol sees it. ``checkpoint``: the loaded checkpoint whose version it
    reports; ``run``: the request's tensors (checked against ``inputs``) -> output tensors."""

    checkpoint: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    run: Run
    alternatives: tuple[str, ...] = field(default=())  # inputs of which a request sends exactly one


def _bad(message: str) -> RequestFailed:
    return RequestFailed("invalid_tensor", message)


def _images(tensors: dict[str, Tensor], serving: Serving, config: PreprocessConfig) -> Images:
    """The request's ``image`` (encoded) or ``pixels`` (preprocessed) input, as the handlers take it."""
    limit = serving.settings.max_images
    if "image" in tensors:
        data = tensors["image"].data
        if not 1 <= len(data) <= limit:
            raise RequestFailed("too_many_images", f"input 'image': {len(data)} images; send 1 to {limit}")
        return [Upload("image", f"[{i}]", bytes(value)) for i, value in enumerate(data)]
    pixels = tensors["pixels"].data
    if not 1 <= len(pixels) <= limit:
        raise RequestFailed("too_many_images", f"input 'pixels': {len(pixels)} images; send 1 to {limit}")
    if not np.isfinite(pixels).all():
        raise _bad("input 'pixels': every value must be finite")
    return (pixels[:, 0] * config.std + config.mean).astype(np.float32)


def classifier(name: str) -> Run:
    """The protocol's run for a classifier handler ``name``: images in; each one's class index
    and every class's probability out (class names are in the model's metadata ``labels``)."""

    async def run(tensors: dict[str, Tensor], serving: Serving, endpoint: str) -> list[Tensor]:
        images = _images(tensors, serving, serving.models.checkpoints[name].preprocess)
        predictions = (await serving.engine.run(name, images, serving, endpoint))["predictions"]
        labels = [p.get("index", p["label"]) for p in predictions]  # garments: names, with their index
        probabilities = [list(p["probabilities"].values()) if isinstance(p["probabilities"], dict) else p["probabilities"]
                         for p in predictions]
        return [Tensor("label", "INT64", np.array(labels, dtype=np.int64)),
                Tensor("probabilities", "FP32", np.array(probabilities, dtype=np.float32))]

    return run


async def _digit_sum(tensors: dict[str, Tensor], serving: Serving, endpoint: str) -> list[Tensor]:
    images = _images(tensors, serving, serving.models.checkpoints["digit_sum"].preprocess)
    numbers = tensors["number"].data
    if len(numbers) != len(images):
        raise _bad(f"input 'number': {len(numbers)} integers for {len(images)} images; send one per image")
    for number in numbers.tolist():
        check_number(number, serving.models, serving.settings)
    answers = await asyncio.gather(*(serving.engine.run("digit_sum", (images[i], int(numbers[i])), serving, endpoint)
                                     for i in range(len(numbers))))
    return [Tensor("digit", "INT64", np.array([a["digit"] for a in answers], dtype=np.int64)),
            Tensor("probability", "FP32", np.array([a["probability"] for a in answers], dtype=np.float32)),
            Tensor("sum", "INT64", np.array([a["sum"] for a in answers], dtype=np.int64))]


async def _sequence(tensors: dict[str, Tensor], serving: Serving, endpoint: str) -> list[Tensor]:
    if "strip" in tensors:
        strips = tensors["strip"].data
        if len(strips) != 1:
            raise _bad(f"input 'strip': {len(strips)} images; a request reads one strip (shape [1])")
        answer = await serving.engine.run("strip", Upload("strip", "", bytes(strips[0])), serving, endpoint)
    else:
        images = _images(tensors, serving, serving.models.checkpoints["sequence"].preprocess)
        answer = await serving.engine.run("sequence", images, serving, endpoint)
    digits = answer["digits"]
    return [Tensor("contains_4", "BOOL", np.array([answer["contains_4"]], dtype=np.bool_)),
            Tensor("probability", "FP32", np.array([answer["probability"]], dtype=np.float32)),
            Tensor("digits", "INT64", np.array([d["label"] for d in digits], dtype=np.int64)),
            Tensor("digit_probabilities", "FP32", np.array([d["probability"] for d in digits], dtype=np.float32))]


IMAGE = TensorSpec("image", "BYTES", (-1,))
PIXELS = TensorSpec("pixels", "FP32", (-1, 1, CANVAS, CANVAS))
CLASSES = (TensorSpec("label", "INT64", (-1,)), TensorSpec("probabilities", "FP32", (-1, 10)))

MODELS: dict[str, OipModel] = {
    "digit": OipModel("digit", (IMAGE, PIXELS), CLASSES, classifier("digit"), alternatives=("image", "pixels")),
    "fashion": OipModel("fashion", (IMAGE, PIXELS), CLASSES, classifier("fashion"), alternatives=("image", "pixels")),
    "digit_sum": OipModel("digit_sum", (IMAGE, PIXELS, TensorSpec("number", "INT64", (-1,))),
                          (TensorSpec("digit", "INT64", (-1,)), TensorSpec("probability", "FP32", (-1,)),
                           TensorSpec("sum", "INT64", (-1,))), _digit_sum, alternatives=("image", "pixels")),
    "sequence": OipModel("sequence", (TensorSpec("strip", "BYTES", (1,)), IMAGE, PIXELS),
                         (TensorSpec("contains_4", "BOOL", (1,)), TensorSpec("probability", "FP32", (1,)),
                          TensorSpec("digits", "INT64", (-1,)), TensorSpec("digit_probabilities", "FP32", (-1,))),
                         _sequence, alternatives=("strip", "image", "pixels")),
}


def check_inputs(model_name: str, model: OipModel, tensors: dict[str, Tensor]) -> None:
    """Each input known, of its datatype and shape; exactly one of the alternatives; the rest all given."""
    specs = {spec.name: spec for spec in model.inputs}
    for tensor in tensors.values():
        spec = specs.get(tensor.name)
        if spec is None:
            raise _bad(f"model '{model_name}' has no input '{tensor.name}'; its inputs: {', '.join(specs)}")
        if tensor.datatype != spec.datatype:
            raise _bad(f"input '{tensor.name}' is {spec.datatype}, not {tensor.datatype}")
        shape = tensor.shape
        if len(shape) != len(spec.shape) or any(want not in (-1, got) for want, got in zip(spec.shape, shape)):
            raise _bad(f"input '{tensor.name}' has shape {list(spec.shape)} (-1: any size), not {shape}")
    chosen = [name for name in model.alternatives if name in tensors]
    if model.alternatives and len(chosen) != 1:
        raise _bad(f"send exactly one of the inputs {', '.join(model.alternatives)}")
    missing = [name for name in specs if name not in model.alternatives and name not in tensors]
    if missing:
        raise _bad(f"missing input {', '.join(repr(m) for m in missing)}")
