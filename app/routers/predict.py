"""The prediction endpoints: multipart uploads in, JSON out.

The routes only read the form and check its shape; the engine runs the endpoint's handler
(``app/handlers/``: decode, predict, encode), batching concurrent requests.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile

from app.deps import ServingDep
from app.failures import RequestFailed
from app.handlers import Upload
from app.handlers.digit_sum import check_number
from app.schemas import (
    DigitResponse,
    Error,
    GarmentResponse,
    SequenceResponse,
    SumResponse,
)
from app.settings import Settings

router = APIRouter(prefix="/predict", tags=["predict"])

IMAGE_HELP = ("PNG, JPEG, BMP, GIF (first frame), WebP or TIFF; any size; grayscale or colour; white ink on "
              "black or black ink on white")
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "malformed multipart body: over 1,000 parts, or a non-file field over 1 MB (`bad_request`)"},
    401: {"model": Error, "description": "API_KEY is set and the request does not carry it (`unauthorized`)"},
    413: {"model": Error, "description": "request body or an image too large (`payload_too_large`, `image_too_large`)"},
    415: {"model": Error, "description": "a file is not an image in a supported format (`unsupported_media_type`)"},
    422: {"model": Error, "description": "missing or doubled field, empty or corrupt file, no digit (or garment) "
                                         "found, too many images or digits, bad number (`invalid_request`, `empty_file`, "
                                         "`corrupt_image`, `no_digit_found`, `no_garment_found`, `too_many_images`, `too_many_digits`, "
                                         "`invalid_number`, `number_out_of_range`)"},
    503: {"model": Error, "description": "models not loaded yet, or shutting down (`not_ready`); at capacity "
                                         "(`overloaded`) or past the request deadline (`deadline_exceeded`). "
                                         "Carries `Retry-After`."},
}
_INTEGER = re.compile(r"[+-]?[0-9]{1,12}")


async def _read(files: list[UploadFile], field: str, settings: Settings) -> list[Upload]:
    if len(files) > settings.max_images:
        raise RequestFailed("too_many_images", f"{len(files)} images sent; the limit is {settings.max_images}")
    return [Upload(field, file.filename or "", await file.read()) for file in files]


async def _single(request: Request, field: str) -> None:
    """Refuse a field sent more than once (FastAPI would silently keep one of them)."""
    if len((await request.form()).getlist(field)) > 1:
        raise RequestFailed("invalid_request", f"field '{field}' must be sent once")


@router.post("/digit", response_model=DigitResponse, responses=ERRORS, summary="Classify one or many digit images")
async def predict_digit(
    files: Annotated[list[UploadFile], File(description=f"one image per digit, repeated; {IMAGE_HELP}")],
    serving: ServingDep,
) -> dict[str, Any]:
    uploads = await _read(files, "files", serving.settings)
    return await serving.engine.run("digit", uploads, serving, "/predict/digit")


@router.post("/fashion", response_model=GarmentResponse, responses=ERRORS,
             summary="Classify one or many garment images (Fashion-MNIST classes)",
             description="The same upload contract as `/predict/digit`. A photo of one item on a plain background, "
                         "either a dark item on light paper or a light one on black (Fashion-MNIST's polarity), is "
                         "cropped to the item, its longer side scaled to 28 pixels and centred, as Fashion-MNIST was "
                         "made. Labels are the class names: T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, "
                         "Shirt, Sneaker, Bag, Ankle boot.")
async def predict_fashion(
    files: Annotated[list[UploadFile], File(description=f"one image per garment, repeated; {IMAGE_HELP}")],
    serving: ServingDep,
) -> dict[str, Any]:
    uploads = await _read(files, "files", serving.settings)
    return await serving.engine.run("fashion", uploads, serving, "/predict/fashion")


@router.post("/sequence", response_model=SequenceResponse, response_model_exclude_none=True, responses=ERRORS,
             summary="Does a sequence of digits contain a 4?",
             description="Send exactly one of `strip` (one image of a row of handwritten digits, read left to "
                         "right: spacing uneven or not, digits touching, patterned paper, dashes, commas, periods and "
                         "lines that are not digits) or `files` (the digit images in order). A strip is read whole by "
                         "the line reader (a CNN-BiLSTM trained with CTC), which gives the digits and P(contains a 4); "
                         "digit images go to the CNN-LSTM for P(contains a 4) and the digit model for each digit.")
async def predict_sequence(
    request: Request,
    serving: ServingDep,
    strip: Annotated[UploadFile | None, File(description=f"a row of digits; {IMAGE_HELP}")] = None,
    files: Annotated[list[UploadFile] | None, File(description="the digit images, in order")] = None,
) -> dict[str, Any]:
    if (strip is None) == (not files):
        raise RequestFailed("invalid_request", "send exactly one of 'strip' (one image) or 'files' (digit images)")
    if strip is not None:
        await _single(request, "strip")
        upload = Upload("strip", strip.filename or "", await strip.read())
        return await serving.engine.run("strip", upload, serving, "/predict/sequence")
    uploads = await _read(files or [], "files", serving.settings)
    return await serving.engine.run("sequence", uploads, serving, "/predict/sequence")


@router.post("/digit-sum", response_model=SumResponse, responses=ERRORS, summary="Read a digit and add an integer to it")
async def predict_digit_sum(
    request: Request,
    file: Annotated[UploadFile, File(description=f"one digit image; {IMAGE_HELP}")],
    number: Annotated[str, Form(description="an integer, e.g. 42 or -7", examples=["42"])],
    serving: ServingDep,
) -> dict[str, Any]:
    await _single(request, "file")
    await _single(request, "number")
    if not _INTEGER.fullmatch(number):
        shown = number if len(number) <= 40 else number[:40] + "..."
        raise RequestFailed("invalid_number", f"number must be an integer written in digits, got {shown!r}")
    value = int(number)
    check_number(value, serving.models, serving.settings)
    upload = Upload("file", file.filename or "", await file.read())
    return await serving.engine.run("digit_sum", (upload, value), serving, "/predict/digit-sum")
