"""Response bodies, as documented in the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Error(BaseModel):
    detail: str = Field(description="what went wrong, for people")
    code: str = Field(description="stable machine-readable code", examples=["no_digit_found"])


class DigitPrediction(BaseModel):
    label: int = Field(ge=0, le=9)
    probability: float = Field(ge=0, le=1, description="probability of the label")
    probabilities: list[float] = Field(min_length=10, max_length=10, description="probability of each digit 0-9")


class DigitResponse(BaseModel):
    model: str = Field(examples=["digit:1.0.0"])
    predictions: list[DigitPrediction] = Field(description="one per uploaded image, in the order sent")


class DigitRead(BaseModel):
    label: int = Field(ge=0, le=9)
    probability: float = Field(ge=0, le=1)


class SequenceResponse(BaseModel):
    model: str = Field(examples=["sequence:1.0.0"])
    contains_4: bool = Field(description="probability >= 0.5")
    probability: float = Field(ge=0, le=1, description="P(the sequence contains a 4), from the CNN-LSTM")
    length: int = Field(ge=1, description="number of digits found")
    digits: list[DigitRead] = Field(description="the digits, left to right, read by the digit model")


class SumResponse(BaseModel):
    model: str = Field(examples=["digit_sum:1.0.0"])
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


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class Status(BaseModel):
    status: str = Field(examples=["ok"])
