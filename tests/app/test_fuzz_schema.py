"""Property-based fuzzing of the running service from its own OpenAPI schema (schemathesis):
whatever the generated request, no 5xx, and every response is documented (status code,
content type, body schema). Bounded: a fixed number of examples per operation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bench.processes import running_service

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def service_url() -> Iterator[str]:
    with running_service() as service:
        yield service.url


def test_every_response_is_documented_and_none_is_a_server_error(service_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{service_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /predict/digit", "POST /predict/sequence", "POST /predict/digit-sum", "POST /predict/fashion",
                                               "POST /v2/models/{name}/infer", "GET /v2/models/{name}", "GET /v2/health/ready"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        def check(case) -> None:
            case.call_and_validate(checks=CHECKS)

        check()
