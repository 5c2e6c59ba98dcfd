"""``python -m training study <name>``: the original studies, reproduced on our models.

Each study is one function ``run(StudyOptions) -> Path`` that writes a Markdown report and its PNG
figures into ``docs/studies/`` and returns the report's path. Numbers come from the test split.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from training.studies import architectures, calibration, error_gallery, label_noise
from training.studies.common import StudyOptions

STUDIES: dict[str, Callable[[StudyOptions], Path]] = {
    "error-gallery": error_gallery.run,
    "calibration": calibration.run,
    "label-noise": label_noise.run,
    "architectures": architectures.run,
}

__all__ = ["STUDIES", "StudyOptions"]
