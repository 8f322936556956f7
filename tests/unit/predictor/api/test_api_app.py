"""The HTTP API before the feature read: auth, body limits, parsing, errors, metrics, CORS.

No Redis here: the app's client points at a port nothing listens on, which is also how the
"Redis is down" answers are tested. What needs the stream's state is in
tests/integration/test_api_endpoints.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from predictor.api.middleware import INTERNAL_ERROR
from predictor.api.schemas import ErrorBody, NotReadyBody, ValidationErrorBody
from tests.api_fakes import FixedModel, Models, call, order_json, unit_app

KEY = "k3y-" + "x" * 28


def test_healthz_is_alive_and_open_with_a_key_set() -> None:
    response = call(unit_app(api_key=KEY), "GET", "/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "alive"}
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("POST", "/v1/predictions"),
        ("GET", "/v1/predictions/o-1"),
        ("GET", "/v1/stores/s1/eta"),
        ("GET", "/no/such/route"),
    ],
)
def test_everything_but_healthz_needs_the_key(method: str, path: str) -> None:
    app = unit_app(Models(FixedModel()), api_key=KEY)

    missing = call(app, method, path, json=order_json() if method == "POST" else None)
    wrong = call(app, method, path, headers={"X-API-Key": KEY[:-1] + "y"})
    wrong_bearer = call(app, method, path, headers={"Authorization": "Bearer " + KEY + "z"})

    for response in (missing, wrong, wrong_bearer):
        assert response.status_code == 401
        body = ErrorBody.model_validate(response.json())
        assert "X-API-Key" in body.detail and body.request_id
        assert KEY[:10] not in response.text
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "headers",
    [{"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}, {"authorization": f"bearer {KEY}"}],
)
def test_the_key_opens_the_api_as_a_header_or_a_bearer_token(headers: dict[str, str]) -> None:
    app = unit_app(Models(FixedModel()), api_key=KEY)

    assert call(app, "GET", "/metrics", headers=headers).status_code == 200
    assert call(app, "GET", "/openapi.json", headers=headers).status_code == 200


def test_without_a_key_set_nothing_asks_for_one() -> None:
    app = unit_app(Models(FixedModel()))

    assert call(app, "GET", "/metrics").status_code == 200


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read() -> None:
    app = unit_app(Models(FixedModel()), max_request_bytes=2048)
    read = []

    async def body() -> AsyncIterator[bytes]:
        read.append(1)
        yield b"x" * 4096

    response = call(
        app,
        "POST",
        "/v1/predictions",
        content=b"[" + b" " * 4000 + b"]",
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 413
    assert "4002 bytes" in response.json()["detail"]
    assert "ETA_MAX_REQUEST_BYTES" in response.json()["detail"]
    assert not read


def test_a_streamed_body_is_counted_as_it_arrives() -> None:
    app = unit_app(Models(FixedModel()), max_request_bytes=2048)
    sent = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):  # 100 kB without a Content-Length
            sent.append(1)
            yield b" " * 1024

    response = call(app, "POST", "/v1/predictions", chunks=chunks)

    assert response.status_code == 413
    assert "2048-byte limit" in response.json()["detail"]
    assert len(sent) < 100  # it stopped reading past the limit


def test_a_body_under_the_limit_gets_through_in_chunks() -> None:
    app = unit_app(Models(None), max_request_bytes=4096)
    raw = orjson.dumps(order_json())

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(raw), 7):
            yield raw[i : i + 7]

    response = call(app, "POST", "/v1/predictions", chunks=chunks)

    assert response.status_code == 503  # parsed and valid; no model yet


@pytest.mark.parametrize(
    ("body", "field", "kind"),
    [
        (b"", "body", "missing"),
        (b"{not json", "body", "json_invalid"),
        (b'"an order"', "body", "model_type"),
        (b"[]", "body", "too_short"),
        (orjson.dumps([{}] * 1001), "body", "too_long"),
        (orjson.dumps(order_json(total_items=0)), "body.total_items", "greater_than_equal"),
        (orjson.dumps(order_json(created_at="2026-01-01T12:00:00")), "body.created_at", ""),
        (orjson.dumps(order_json(extra_field=1)), "body.extra_field", "extra_forbidden"),
        (orjson.dumps(order_json(schema_version=2)), "body.schema_version", "literal_error"),
        (
            orjson.dumps([order_json(), order_json(), order_json(), order_json(subtotal=-1)]),
            "body.3.subtotal",
            "greater_than_equal",
        ),
        (b'{"order_id": 1e999}', "body", "json_invalid"),
        (b"[" * 5000 + b"]" * 5000, "body", "json_invalid"),
    ],
)
def test_bad_bodies_get_422_with_the_field(body: bytes, field: str, kind: str) -> None:
    app = unit_app(Models(FixedModel()))

    response = call(
        app, "POST", "/v1/predictions", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 422, response.text
    problems = ValidationErrorBody.model_validate(response.json()).detail
    assert any(p.field == field and p.type.startswith(kind) for p in problems), problems


def test_1001_orders_are_refused_1000_are_parsed() -> None:
    app = unit_app(Models(None))

    over = call(app, "POST", "/v1/predictions", json=[order_json(f"o{i}") for i in range(1001)])
    at = call(app, "POST", "/v1/predictions", json=[order_json(f"o{i}") for i in range(1000)])

    assert over.status_code == 422
    assert "at most 1000 orders" in over.json()["detail"][0]["msg"]
    assert at.status_code == 503  # valid; no model to score them with


def test_field_problems_are_capped_and_never_echo_the_input() -> None:
    app = unit_app(Models(FixedModel()))
    secret = "sk_live_" + "9" * 40
    orders = [order_json(f"o{i}", store_id=secret + "!", total_items=-1) for i in range(300)]

    response = call(app, "POST", "/v1/predictions", json=orders)

    assert response.status_code == 422
    problems = response.json()["detail"]
    assert len(problems) == 50
    assert problems[-1]["type"] == "too_many_errors"
    assert secret not in response.text


def test_bad_path_parameters_get_422() -> None:
    app = unit_app(Models(FixedModel()))

    response = call(app, "GET", "/v1/predictions/" + "x" * 65)

    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "path.order_id"


def test_no_model_yet_is_503_with_the_reason() -> None:
    response = call(unit_app(Models(None)), "POST", "/v1/predictions", json=order_json())

    assert response.status_code == 503
    assert "no model at eta@production yet" in response.json()["detail"]


def test_redis_down_is_503_without_details() -> None:
    app = unit_app(Models(FixedModel()))

    scored = call(app, "POST", "/v1/predictions", json=order_json())
    looked_up = call(app, "GET", "/v1/predictions/o-1")

    for response in (scored, looked_up):
        assert response.status_code == 503
        assert (
            response.json()["detail"] == "the feature store (Redis) is unavailable; retry shortly"
        )
        assert "127.0.0.1" not in response.text


def test_readyz_lists_every_reason() -> None:
    response = call(unit_app(Models(None)), "GET", "/readyz")

    assert response.status_code == 503
    body = NotReadyBody.model_validate(response.json())
    assert [r.split(" (")[0] for r in body.reasons] == [
        "Redis is unreachable",
        "no model at eta@production yet",
    ]


def test_an_unexpected_error_is_a_generic_500_with_a_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    models = Models(FixedModel())
    models.fail = RuntimeError("password=hunter2 in a traceback")

    response = call(
        unit_app(models),
        "POST",
        "/v1/predictions",
        json=order_json(),
        headers={"X-Request-ID": "r-1"},
    )

    assert response.status_code == 500
    assert response.json() == {"detail": INTERNAL_ERROR, "request_id": "r-1"}
    assert "hunter2" not in response.text and "Traceback" not in response.text
    assert any("hunter2" in str(r.exc_info) and r.request_id == "r-1" for r in caplog.records)  # type: ignore[attr-defined]  # request_id is the log record's extra


def test_an_odd_request_id_is_replaced() -> None:
    response = call(unit_app(), "GET", "/healthz", headers={"X-Request-ID": "<script>"})

    assert response.headers["x-request-id"] != "<script>"
    assert len(response.headers["x-request-id"]) == 32


def test_metrics_count_requests_by_route_template_and_status() -> None:
    app = unit_app(Models(FixedModel()))
    for order_id in ("a", "b", "c"):
        call(app, "GET", f"/v1/predictions/{order_id}")
    call(app, "GET", "/nowhere")

    text = call(app, "GET", "/metrics").text

    assert (
        'eta_http_requests_total{method="GET",route="/v1/predictions/{order_id}",status="503"} 3.0'
        in text
    )
    assert 'route="unmatched",status="404"' in text
    assert 'eta_http_model_info{name="fixed",version="1"} 1.0' in text
    assert "eta_http_request_duration_seconds_bucket" in text


def test_cors_is_closed_by_default_and_opens_for_listed_origins() -> None:
    preflight = {
        "Origin": "https://ops.example.com",
        "Access-Control-Request-Method": "POST",
    }
    closed = call(unit_app(), "OPTIONS", "/v1/predictions", headers=preflight)
    opened = call(
        unit_app(cors_origins=("https://ops.example.com",)),
        "OPTIONS",
        "/v1/predictions",
        headers=preflight,
    )
    simple = call(unit_app(), "GET", "/healthz", headers={"Origin": "https://evil.example"})

    assert "access-control-allow-origin" not in closed.headers
    assert opened.headers["access-control-allow-origin"] == "https://ops.example.com"
    assert "access-control-allow-origin" not in simple.headers


def test_openapi_documents_bodies_answers_and_errors() -> None:
    spec = call(unit_app(), "GET", "/openapi.json").json()
    schemas = spec["components"]["schemas"]
    post = spec["paths"]["/v1/predictions"]["post"]

    assert {"OrderCreated", "DeliveryPrediction", "StoreEta", "ErrorBody"} <= schemas.keys()
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body["anyOf"][1]["maxItems"] == 1000
    assert {"200", "413", "422", "503"} <= post["responses"].keys()
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            assert "200" in operation["responses"], path
            assert operation.get("description") or operation.get("summary"), path
    assert "securitySchemes" not in spec["components"]


def test_openapi_documents_the_key_when_one_is_set() -> None:
    app = unit_app(api_key=KEY)
    spec = call(app, "GET", "/openapi.json", headers={"X-API-Key": KEY}).json()

    assert spec["components"]["securitySchemes"]["ApiKey"]["name"] == "X-API-Key"
    assert "security" not in spec["paths"]["/healthz"]["get"]
    assert "401" in spec["paths"]["/v1/predictions"]["post"]["responses"]
