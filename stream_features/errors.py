"""The feature layer's errors, all under ``EtaError`` so one handler can map them.

EtaError                      http_status 500
├── RejectedMessage           422  bad bytes or a message that breaks the contract
├── FeatureMissingError       422  a feature with no value and no default
├── ServiceUnavailable        503  Kafka or Redis could not be reached
└── DataDirInUse              500  another embedded Redis runs on the same data directory
"""

from __future__ import annotations

__all__ = [
    "DataDirInUse",
    "EtaError",
    "FeatureMissingError",
    "RejectedMessage",
    "ServiceUnavailable",
]


class EtaError(Exception):
    http_status = 500


class RejectedMessage(EtaError):
    """A message that is not valid under the contract; ``reason`` says why, ``field`` where."""

    http_status = 422

    def __init__(self, reason: str, field: str | None = None) -> None:
        self.reason, self.field = reason, field
        super().__init__(f"{field}: {reason}" if field else reason)


class FeatureMissingError(EtaError):
    http_status = 422

    def __init__(self, feature: str, entity_id: str, as_of_ms: int) -> None:
        self.feature, self.entity_id, self.as_of_ms = feature, entity_id, as_of_ms
        super().__init__(
            f"{feature!r} has no value for {entity_id!r} at {as_of_ms}; "
            "give it a default= or backfill the batch table"
        )


class ServiceUnavailable(EtaError):
    http_status = 503

    def __init__(self, service: str, address: str, detail: str) -> None:
        self.service, self.address = service, address
        super().__init__(f"{service} at {address} is not answering: {detail}")


class DataDirInUse(EtaError):
    """Two embedded redis-servers on one directory would append to one AOF and corrupt it."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        super().__init__(
            f"{data_dir} is in use by another embedded Redis (is `eta up` or `eta demo` still "
            "running there?): stop it, or give this one its own ETA_DATA_DIR"
        )
