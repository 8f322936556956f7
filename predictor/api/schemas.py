"""What the HTTP API answers, as pydantic models: the OpenAPI spec is generated from these.

Predictions are the contract's ``DeliveryPrediction`` (the stream's message, ``mode`` aside);
requests are the contract's ``OrderCreated``, one or a list. The handlers write JSON bytes
themselves (the stream's encoder, or bytes stored in Redis), so these models document the
answers rather than serialise them; tests validate real answers against them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, Field

from predictor.serving.pipeline import PipelineConfig
from stream_features.contract import DeliveryPrediction, OrderCreated

__all__ = [
    "BasketProfile",
    "ErrorBody",
    "FieldError",
    "Health",
    "NotReadyBody",
    "PredictionAnswer",
    "Ready",
    "RequestModels",
    "StoreEta",
    "ValidationErrorBody",
    "request_body_schema",
]


class ErrorBody(BaseModel):
    """Every error but 422: what went wrong and what to do, never a stack trace."""

    detail: str
    request_id: str | None = Field(None, description="quote it when reporting a problem")


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="where: 'body', the list index, the field")
    field: str = Field(description="loc as a dotted path, e.g. body.3.total_items")
    msg: str
    type: str = Field(description="the kind of problem, e.g. greater_than_equal, missing")


class ValidationErrorBody(BaseModel):
    """422: every field that breaks the contract (at most 50; the last says how many more)."""

    detail: list[FieldError]
    request_id: str | None = None


class Health(BaseModel):
    status: Literal["alive"]


class Ready(BaseModel):
    status: Literal["ready"]
    model_name: str
    model_version: str
    backend: str | None = Field(None, description="lightgbm or compiled")


class NotReadyBody(BaseModel):
    detail: str
    reasons: list[str]
    request_id: str | None = None


class BasketProfile(BaseModel):
    """The typical order a store's batch ETAs are for (medians of its recent orders)."""

    store_category: str | None = Field(None, description="missing when no order had one")
    order_protocol: int | None = None
    total_items: int
    subtotal: int
    num_distinct_items: int
    min_item_price: int | None = None
    max_item_price: int | None = None
    estimated_order_place_duration_s: int | None = None
    estimated_store_to_consumer_driving_duration_s: int | None = None


class StoreEta(BaseModel):
    """The precomputed ETAs of one store: "if you order now" at each of the next slots."""

    store_id: str
    market_id: str
    batch_version: str = Field(description="the `eta predict batch` run that computed it")
    as_of: AwareDatetime = Field(description="the feature state the run read")
    basket: BasketProfile
    predictions: list[DeliveryPrediction] = Field(
        description="one per hour slot, slot 0 = as_of; mode 'batch'"
    )


def request_body_schema(max_orders: int, stream: PipelineConfig) -> dict[str, Any]:
    """The OpenAPI request body of ``POST /v1/predictions`` (refs into components/schemas), with
    the stream's rules JSON Schema cannot state."""
    ref = {"$ref": "#/components/schemas/OrderCreated"}
    return {
        "required": True,
        "description": (
            f"one order, or a list of 1 to {max_orders} orders, read as the stream reads them: "
            f"each at most {stream.max_message_bytes} bytes of JSON, created_at at most "
            f"{stream.max_future_skew_s} s ahead of now (and within 2000..2100); "
            "type may be left out. Implausible values (min_item_price above max_item_price, "
            "more distinct items than items, ...) are data-quality findings: counted, not "
            "refused, unless ETA_CONTRACT_STRICT is set (docs/contract.md)"
        ),
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        ref,
                        {"type": "array", "items": ref, "minItems": 1, "maxItems": max_orders},
                    ]
                }
            }
        },
    }


PredictionAnswer = Annotated[
    DeliveryPrediction | list[DeliveryPrediction],
    Field(description="a prediction for one order in, a list (same order) for a list in"),
]
RequestModels: tuple[type[BaseModel], ...] = (OrderCreated,)
