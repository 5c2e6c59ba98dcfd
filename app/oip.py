"""The Open Inference Protocol (v2, REST) on the wire: inference requests and responses as JSON,
or as JSON followed by raw tensor bytes (Triton's binary tensor extension, ``tritonclient``'s
default). Only the encoding lives here; which tensors a model takes and gives is
``app.routers.v2``'s business, and nothing here knows HTTP.

The binary extension: the request's ``Inference-Header-Content-Length`` header says how many
bytes of the body are JSON; every input whose ``parameters`` carry ``binary_data_size`` takes
that many of the bytes after it, in order. Numbers are little-endian in row-major order; a BYTES
tensor is each element as a 4-byte little-endian length and its bytes. In JSON, ``data`` is the
row-major list of values (nested lists allowed), and a BYTES element is a base64 string (an
image is not UTF-8 text).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

HEADER_LENGTH = "Inference-Header-Content-Length"
NUMERIC = {"BOOL": np.dtype(np.bool_), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
           "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
           "INT64": np.dtype("<i8"), "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
DATATYPES = (*NUMERIC, "BYTES")
MAX_RANK = 8


class ProtocolError(ValueError):
    """A request the protocol cannot read (malformed JSON, a shape that does not match its data,
    an unknown datatype): answered 400 with ``{"error": message}``."""


@dataclass(frozen=True)
class Tensor:
    """One named tensor: numbers as a typed array of ``shape``; BYTES as an object array of ``bytes``."""

    name: str
    datatype: str
    data: np.ndarray

    @property
    def shape(self) -> list[int]:
        return list(self.data.shape)


@dataclass(frozen=True)
class InferRequest:
    """A decoded inference request. ``outputs``: the outputs asked for, each with whether it
    goes back binary; ``None`` when the request names none (every output, ``binary_default``)."""

    id: str | None
    inputs: dict[str, Tensor]
    outputs: dict[str, bool] | None
    binary_default: bool


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} must be a JSON object")
    return value


def _flag(parameters: dict[str, Any], key: str, what: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise ProtocolError(f"{what}: parameter '{key}' must be true or false")
    return value


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if (not isinstance(value, list) or len(value) > MAX_RANK
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value)):
        raise ProtocolError(f"input '{name}': shape must be a list of at most {MAX_RANK} sizes >= 0")
    return tuple(value)


def _unpack_bytes(raw: bytes, count: int, name: str) -> np.ndarray:
    """A serialised BYTES tensor: ``count`` elements, each a 4-byte little-endian length and its bytes."""
    out = np.empty(count, dtype=object)
    offset = 0
    for i in range(count):
        if offset + 4 > len(raw):
            raise ProtocolError(f"input '{name}': binary data holds fewer than {count} BYTES elements")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise ProtocolError(f"input '{name}': BYTES element {i} runs past the binary data")
        out[i] = raw[offset : offset + length]
        offset += length
    if offset != len(raw):
        raise ProtocolError(f"input '{name}': binary data holds more than {count} BYTES elements")
    return out


def _from_binary(raw: bytes, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    count = math.prod(shape)
    if datatype == "BYTES":
        return _unpack_bytes(raw, count, name).reshape(shape)
    dtype = NUMERIC[datatype]
    if len(raw) != count * dtype.itemsize:
        raise ProtocolError(f"input '{name}': {len(raw)} bytes of binary data, but shape {list(shape)} of {datatype} "
                            f"takes {count * dtype.itemsize}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _from_json(data: Any, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    count = math.prod(shape)
    try:
        values = np.asarray(data, dtype=object if datatype == "BYTES" else None)
    except (ValueError, TypeError, OverflowError):
        raise ProtocolError(f"input '{name}': data must be a list of {datatype} values (nested lists must be regular)") from None
    values = values.reshape(-1)
    if values.size != count:
        raise ProtocolError(f"input '{name}': {values.size} values for shape {list(shape)} ({count} values)")
    if datatype == "BYTES":
        out = np.empty(count, dtype=object)
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise ProtocolError(f"input '{name}': a BYTES element in JSON must be a base64 string")
            try:
                out[i] = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ProtocolError(f"input '{name}': BYTES element {i} is not valid base64") from None
        return out.reshape(shape)
    dtype = NUMERIC[datatype]
    allowed = {"b": "b", "u": "bui", "i": "bui", "f": "buif"}[dtype.kind]
    if count and values.dtype.kind not in allowed:
        raise ProtocolError(f"input '{name}': data must hold {datatype} values")
    with np.errstate(all="ignore"):
        try:
            cast = values.astype(dtype)
        except (ValueError, TypeError, OverflowError):
            raise ProtocolError(f"input '{name}': a value does not fit {datatype}") from None
    if dtype.kind in "iu" and count and not np.array_equal(cast, values):
        raise ProtocolError(f"input '{name}': a value does not fit {datatype}")
    return cast.reshape(shape)


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """The body of ``POST /v2/models/{name}/infer`` (and its ``Inference-Header-Content-Length``)."""
    if header_length is None:
        head, rest = body, b""
    else:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise ProtocolError(f"{HEADER_LENGTH} must be a number of bytes no larger than the body")
        head, rest = body[: int(header_length)], body[int(header_length) :]
    try:
        request = _object(json.loads(head), "the request")
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ProtocolError("the request is not valid JSON (binary tensors need the "
                            f"{HEADER_LENGTH} header)") from None
    parameters = _object(request.get("parameters", {}), "parameters")
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError("id must be a string")
    inputs_json = request.get("inputs")
    if not isinstance(inputs_json, list) or not inputs_json:
        raise ProtocolError("inputs must be a non-empty list")

    inputs: dict[str, Tensor] = {}
    offset = 0
    for item in inputs_json:
        item = _object(item, "an input")
        name, datatype = item.get("name"), item.get("datatype")
        if not isinstance(name, str) or not name:
            raise ProtocolError("every input needs a name")
        if name in inputs:
            raise ProtocolError(f"input '{name}' is given twice")
        if datatype not in DATATYPES:
            raise ProtocolError(f"input '{name}': datatype must be one of {', '.join(DATATYPES)}")
        shape = _shape(item.get("shape"), name)
        input_parameters = _object(item.get("parameters", {}), f"input '{name}' parameters")
        size = input_parameters.get("binary_data_size")
        if size is not None:
            if "data" in item:
                raise ProtocolError(f"input '{name}': both data and binary_data_size")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(rest):
                raise ProtocolError(f"input '{name}': binary_data_size {size!r} runs past the body")
            data = _from_binary(rest[offset : offset + size], datatype, shape, name)
            offset += size
        elif "data" in item:
            data = _from_json(item["data"], datatype, shape, name)
        else:
            raise ProtocolError(f"input '{name}' has no data")
        inputs[name] = Tensor(name, datatype, data)
    if offset != len(rest):
        raise ProtocolError(f"{len(rest) - offset} bytes after the last binary input")

    binary_default = _flag(parameters, "binary_data_output", "the request")
    outputs: dict[str, bool] | None = None
    if "outputs" in request:
        if not isinstance(request["outputs"], list):
            raise ProtocolError("outputs must be a list")
        outputs = {}
        for item in request["outputs"]:
            item = _object(item, "an output")
            name = item.get("name")
            if not isinstance(name, str):
                raise ProtocolError("every requested output needs a name")
            output_parameters = _object(item.get("parameters", {}), f"output '{name}' parameters")
            if "classification" in output_parameters:
                raise ProtocolError(f"output '{name}': the classification extension is not supported; "
                                    "the probabilities output holds every class's")
            outputs[name] = (_flag(output_parameters, "binary_data", f"output '{name}'")
                             if "binary_data" in output_parameters else binary_default)
    return InferRequest(request_id, inputs, outputs, binary_default)


def _pack_bytes(values: np.ndarray) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values.reshape(-1))


def encode_response(model_name: str, model_version: str, request_id: str | None, tensors: list[Tensor],
                    binary: dict[str, bool]) -> tuple[bytes, int | None]:
    """The response body, and the length of its JSON part when tensors follow it in binary
    (the value of ``Inference-Header-Content-Length``), else ``None``."""
    outputs, raw = [], []
    for tensor in tensors:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
        if binary.get(tensor.name, False):
            data = (_pack_bytes(tensor.data) if tensor.datatype == "BYTES"
                    else np.ascontiguousarray(tensor.data, dtype=NUMERIC[tensor.datatype]).tobytes())
            entry["parameters"] = {"binary_data_size": len(data)}
            raw.append(data)
        elif tensor.datatype == "BYTES":
            entry["data"] = [base64.b64encode(v).decode() for v in tensor.data.reshape(-1)]
        else:
            entry["data"] = tensor.data.reshape(-1).tolist()
        outputs.append(entry)
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": outputs}
    if request_id is not None:
        response["id"] = request_id
    head = json.dumps(response, separators=(",", ":")).encode()
    if not raw:
        return head, None
    return head + b"".join(raw), len(head)
