"""``/predict/sequence`` with a ``strip``: one image of a row of digits, read whole by the line
reader (a CNN-BiLSTM trained with CTC, ``model.line``) -> the digits, where each was read, and
P(the row contains a 4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from app.failures import RequestFailed
from app.handlers.base import Handler
from app.handlers.uploads import MAX_SIDE, Upload, decode_image, open_image, stop_if_abandoned
from app.settings import Settings
from model.line import Line, LineConfig, Reading, read_lines, strip_to_line
from model.preprocess import NoInkError

if TYPE_CHECKING:
    from app.deps import Serving
    from app.registry import Models


@dataclass(frozen=True)
class StripLine:
    """A strip as the line reader reads it, and what its boxes are measured against."""

    upload: Upload
    line: Line
    size: tuple[int, int]  # the decoded image's width and height
    max_digits: int


def line_config(models: Models) -> LineConfig:
    return LineConfig.from_dict(models.checkpoints["line_reader"].metadata["preprocess"])


class StripHandler(Handler[Upload, StripLine, Reading]):
    name = "strip"
    model = "line_reader"

    def open(self, inputs: Upload, settings: Settings) -> list[Image.Image]:
        return [open_image(inputs.data, inputs.label, settings.max_image_pixels)]

    def decode(self, inputs: Upload, opened: list[Image.Image], serving: Serving) -> StripLine:
        stop_if_abandoned(serving)
        image = decode_image(opened[0], inputs.label, MAX_SIDE["strip"])
        try:
            line = strip_to_line(image, line_config(serving.models))
        except NoInkError as error:
            raise RequestFailed("no_digit_found", f"{inputs.label}: {error}") from None
        return StripLine(inputs, line, image.size, serving.settings.max_sequence_digits)

    def predict(self, models: Models, payloads: list[StripLine]) -> list[Reading]:
        """The lines of several requests share one forward pass, padded to the widest."""
        return read_lines(models.nets["line_reader"], [p.line.pixels for p in payloads], models.device, line_config(models))

    def encode(self, payload: StripLine, output: Reading, models: Models) -> dict[str, Any]:
        label = payload.upload.label
        if not output.labels:
            raise RequestFailed("no_digit_found", f"{label}: no digit found in the strip (only marks that are not digits)")
        if len(output.labels) > payload.max_digits:
            raise RequestFailed("too_many_digits", f"{label} holds {len(output.labels)} digits; the limit is {payload.max_digits}")
        width, height = payload.size
        digits = [{"label": digit, "probability": p,
                   "box": [round(min(max(v / side, 0.0), 1.0), 4) for v, side in zip(box, (width, height, width, height))]}
                  for digit, p, box in zip(output.labels, output.probabilities, payload.line.boxes(output))]
        return {"model": models.ids["line_reader"], "contains_4": output.contains_4 >= 0.5,
                "probability": output.contains_4, "length": len(digits), "digits": digits}

    def warm_up(self, models: Models) -> None:
        config = line_config(models)
        read_lines(models.nets["line_reader"], [np.zeros((config.height, 64), np.float32)] * 2, models.device, config)
