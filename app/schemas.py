"""Response bodies, as documented in the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_TEN = [0.0001, 0.0002, 0.0003, 0.0001, 0.0002, 0.0001, 0.0001, 0.9983, 0.0002, 0.0004]


class Error(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"detail": "strip 'number.png': the image is blank: no ink stands out from the background", "code": "no_digit_found"}]})

    detail: str = Field(description="what went wrong, for people")
    code: str = Field(description="stable machine-readable code", examples=["no_digit_found"])


class DigitPrediction(BaseModel):
    label: int = Field(ge=0, le=9)
    probability: float = Field(ge=0, le=1, description="probability of the label")
    probabilities: list[float] = Field(min_length=10, max_length=10, description="probability of each digit 0-9")


class DigitResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "digit:1.5.0", "predictions": [{"label": 7, "probability": 0.9983, "probabilities": _TEN}]}]})

    model: str = Field(examples=["digit:1.5.0"])
    predictions: list[DigitPrediction] = Field(description="one per uploaded image, in the order sent")


_GARMENTS = {"T-shirt/top": 0.0012, "Trouser": 0.9941, "Pullover": 0.0004, "Dress": 0.0031, "Coat": 0.0003,
             "Sandal": 0.0001, "Shirt": 0.0005, "Sneaker": 0.0001, "Bag": 0.0001, "Ankle boot": 0.0001}


class GarmentPrediction(BaseModel):
    label: str = Field(description="the class name", examples=["Trouser"])
    index: int = Field(ge=0, le=9, description="the Fashion-MNIST class index")
    probability: float = Field(ge=0, le=1, description="probability of the label")
    probabilities: dict[str, float] = Field(description="probability of each class, by name, in class-index order")


class GarmentResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "fashion:1.0.0", "predictions": [{"label": "Trouser", "index": 1, "probability": 0.9941,
                                                    "probabilities": _GARMENTS}]}]})

    model: str = Field(examples=["fashion:1.0.0"])
    predictions: list[GarmentPrediction] = Field(description="one per uploaded image, in the order sent")


class DigitRead(BaseModel):
    label: int = Field(ge=0, le=9)
    probability: float = Field(ge=0, le=1)
    box: list[float] | None = Field(None, min_length=4, max_length=4, examples=[[0.02, 0.05, 0.3, 0.95]],
                                    description="strips only: where the digit was read, as [left, top, right, bottom] "
                                                "fractions of the image's width and height (the image as EXIF orientation "
                                                "shows it): the cut between neighbouring digits lies halfway between the "
                                                "line reader's peaks for them")


class SequenceResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "sequence:1.1.0", "contains_4": True, "probability": 0.9991, "length": 3,
         "digits": [{"label": 1, "probability": 0.9995}, {"label": 4, "probability": 0.9987},
                    {"label": 9, "probability": 0.9979}]}]})

    model: str = Field(examples=["sequence:1.1.0", "line_reader:1.0.0"],
                       description="`line_reader` for a strip, `sequence` for digit images in order")
    contains_4: bool = Field(description="probability >= 0.5")
    probability: float = Field(ge=0, le=1, description="P(the sequence contains a 4), from a CNN-LSTM: for a strip, "
                               "the line reader's (a CNN-BiLSTM reading the whole strip); for digit images, SequenceNet's")
    length: int = Field(ge=1, description="number of digits found")
    digits: list[DigitRead] = Field(description="the digits, left to right: read by the line reader in a strip "
                                    "(marks that are not digits, such as dashes, commas and lines, are left out), "
                                    "by the digit model in digit images")


class SumResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "digit_sum:1.3.0", "digit": 3, "probability": 0.9990, "number": 39, "sum": 42}]})

    model: str = Field(examples=["digit_sum:1.3.0"])
    digit: int = Field(ge=0, le=9)
    probability: float = Field(ge=0, le=1, description="probability of the digit read")
    number: int
    sum: int


class ModelInfo(BaseModel):
    name: str
    id: str
    task: str
    architecture: str
    version: str
    sha256: str
    parameters: int
    device: str
    labels: list[str]
    metrics: dict[str, Any]
    created: str
    file: str
    reports: list[str] = Field(description="the model's study reports, as paths in the repository (docs/studies/)")


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class Status(BaseModel):
    status: str = Field(examples=["ok"])


# The Open Inference Protocol (v2): what /docs shows of its bodies. The infer route reads its
# body itself (JSON, or JSON then binary tensors: ``app.oip``); these models document it.

class OipError(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"error": "unknown model 'digits'", "code": "not_found"}]})

    error: str = Field(description="what went wrong, for people")
    code: str = Field(description="stable machine-readable code, as on the other routes", examples=["not_found"])


class OipServer(BaseModel):
    name: str
    version: str
    extensions: list[str]


class OipLive(BaseModel):
    live: bool


class OipReady(BaseModel):
    ready: bool


class OipModelReady(BaseModel):
    name: str
    ready: bool


class OipTensorMeta(BaseModel):
    name: str
    datatype: str = Field(examples=["FP32"])
    shape: list[int] = Field(description="-1 for a dimension of any size", examples=[[-1, 1, 28, 28]])


class OipModelMeta(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[OipTensorMeta]
    outputs: list[OipTensorMeta]
    parameters: dict[str, Any] = Field(default_factory=dict)


class OipInput(BaseModel):
    name: str = Field(examples=["pixels"])
    shape: list[int] = Field(examples=[[1, 1, 28, 28]])
    datatype: str = Field(examples=["FP32"])
    parameters: dict[str, Any] | None = Field(None, description="binary_data_size: this input's bytes follow the JSON")
    data: list[Any] | None = Field(None, description="the values in row-major order; a BYTES element is base64")


class OipRequestedOutput(BaseModel):
    name: str = Field(examples=["label"])
    parameters: dict[str, Any] | None = Field(None, description="binary_data: return this output as raw bytes")


class OipInferRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="binary_data_output: every output as raw bytes")
    inputs: list[OipInput]
    outputs: list[OipRequestedOutput] | None = None


class OipOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class OipInferResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[OipOutput]
