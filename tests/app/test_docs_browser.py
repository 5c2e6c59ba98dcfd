"""A new user's first look: start the service as the README does, open /docs in headless
Chromium with every host but 127.0.0.1 unresolvable, and see the operations listed.

Needs Debian's ``chromium``; .ci/run installs it and sets REQUIRE_BROWSER=1, so in CI a missing
browser is an error rather than a skip.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import pytest

from bench.processes import running_service


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """``python -m app`` (what ``make serve`` runs) on a free port."""
    with running_service() as service:
        assert any(" ready: 5 models on cpu" in line for line in service.lines), "".join(service.lines)
        yield service.url


def test_swagger_ui_lists_the_operations_offline(served, chromium, tmp_path):
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        # No network but loopback: a page that needed a CDN would render nothing.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--virtual-time-budget=20000", "--dump-dom", f"{served}/docs",
    ]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    paths = set(re.findall(r'class="opblock-summary-path"[^>]*data-path="([^"]+)"', dom))
    assert {"/predict/digit", "/predict/sequence", "/predict/digit-sum", "/predict/fashion", "/models", "/healthz", "/readyz", "/metrics",
            "/v2/models/{name}/infer", "/v2/models/{name}", "/v2/health/ready"} <= paths, dom[:2000]
    assert "digitserve" in dom
