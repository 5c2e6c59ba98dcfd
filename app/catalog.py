"""What the service serves: each model's checkpoint file, the handler of its endpoint, and the
study reports behind it. Adding a model is a row here and a handler (``docs/adding-a-model.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.handlers.base import Handler
from app.handlers.digit import DigitHandler
from app.handlers.digit_sum import DigitSumHandler
from app.handlers.fashion import FashionHandler
from app.handlers.sequence import SequenceHandler
from app.handlers.strip import StripHandler


@dataclass(frozen=True)
class ModelSpec:
    """One served model: its checkpoint in the weights folder, its endpoint's handler, and the
    reports (paths in the repository) that ``GET /models`` points to."""

    file: str
    handler: Handler
    reports: tuple[str, ...] = field(default=())


CATALOG: dict[str, ModelSpec] = {
    "digit": ModelSpec("digit.pt", DigitHandler(), ("docs/studies/error-gallery.md", "docs/studies/calibration.md",
                                                    "docs/studies/architectures.md")),
    "sequence": ModelSpec("sequence.pt", SequenceHandler(), ("docs/studies/label-noise.md",)),
    "digit_sum": ModelSpec("digit_sum.pt", DigitSumHandler()),
    "fashion": ModelSpec("fashion.pt", FashionHandler(), ("docs/studies/architectures.md",)),
    "line_reader": ModelSpec("line_reader.pt", StripHandler(), ("docs/strip-reading.md",)),
}
# The digit models read the same arrays (the sequence endpoint feeds one batch to two of them):
# their checkpoints must agree on the preprocessing.
SHARED_PREPROCESSING = ("digit", "sequence", "digit_sum")
