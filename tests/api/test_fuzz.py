"""Fuzz the API from its own OpenAPI document: no input may produce a 500.

Drives schemathesis' generated cases with Hypothesis directly (its pytest fixture loader
does not run on pytest 9), for every operation of the running app, with an admin key so
that requests get past authentication into validation and the handlers.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings

from serving.security import HEADER

EXAMPLES_PER_OPERATION = 40


def test_no_input_produces_a_server_error(api: dict[str, Any]) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", api["app"])
    auth = {HEADER: api["keys"]["admin"]}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 11
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            response = case.call(headers=auth)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path}: {response.status_code} "
                    f"{response.text[:300]}"
                )

        run()
    assert not failures, failures[:5]
