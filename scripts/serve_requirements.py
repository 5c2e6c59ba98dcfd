"""Print the serving image's requirements, read from pyproject.toml: the core dependencies and
the ``serve`` extra (or the comma-separated extras given, e.g. ``serve,ray`` for the Ray Serve
image), without torch (the Dockerfile installs torch first, from the index and at the
version its build arguments name, so that the CPU build is used, not PyPI's CUDA one).

    python -m scripts.serve_requirements > requirements.txt
    python -m scripts.serve_requirements serve,ray > requirements.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path


def main(argv: list[str]) -> int:
    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
    extras = (argv[0] if argv else "serve").split(",")
    requirements = [*project["dependencies"]]
    for extra in extras:
        requirements += project["optional-dependencies"][extra.strip()]
    for requirement in requirements:
        if re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower() != "torch":
            print(requirement)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
