"""schemathesis against the app's own OpenAPI spec, in process (ASGI, no network).

Every operation gets schema-valid and schema-breaking requests, with auth off and on; every
answer must pass schemathesis's checks — no 5xx, status codes, content types, bodies and
headers as documented, auth enforced, bad input refused — but one: ``positive_data_acceptance``
(a schema-valid request must succeed). The contract has rules JSON Schema cannot state
(min_item_price <= max_item_price, num_distinct_items <= total_items, timestamps within
2000..2100), and refusing those with a 422 that names the field is the right answer.

The app reads the real Redis (under this test's prefix) with a constant model, so requests that
pass validation go through the feature read and the encoder too.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from predictor.api import ApiConfig, create_app
from predictor.api.loop_redis import api_redis
from stream_features.stack import StackUrls
from tests.api_fakes import FixedModel, Models

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_EXAMPLES = 30
"""Per operation and mode: 9 and 11 runs of it, with auth off and on, in about 20 s here."""
KEY = "schemathesis-key-0123456789abcdef"


@pytest.mark.parametrize("api_key", [None, KEY], ids=["auth-off", "auth-on"])
def test_no_server_errors_and_answers_as_documented(
    stack: StackUrls, key_prefix: str, api_key: str | None
) -> None:
    client, async_client = api_redis(stack.redis_url, 2.0)
    app = create_app(
        ApiConfig(key_prefix=key_prefix, api_key=api_key),
        client,
        Models(FixedModel()),
        async_client=async_client,
    )
    headers = {"X-API-Key": api_key} if api_key else {}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=headers)
    failures: dict[str, BaseException] = {}
    checked = []

    for result in schema.get_all_operations():
        operation = result.ok()
        has_input = "{" in operation.path or operation.method.upper() == "POST"
        modes = [GenerationMode.POSITIVE]
        if has_input or (api_key and operation.path != "/healthz"):  # something to break
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case) -> None:
                case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

            try:
                check()
            except BaseException as exc:  # every failure of every operation, then one assert
                failures[f"{operation.label} [{mode.value}]"] = exc
            checked.append(f"{operation.label} [{mode.value}]")

    client.close()
    assert len(checked) == (11 if api_key else 9)
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
