"""The producers' errors, under the feature layer's ``EtaError``.

EtaError
├── PublishError        some events were not acknowledged by the broker
└── NoBrokerConfigured  no ETA_KAFKA_BOOTSTRAP_SERVERS: nothing to publish to
"""

from __future__ import annotations

from stream_features.errors import EtaError

__all__ = ["NoBrokerConfigured", "PublishError"]


class PublishError(EtaError):
    """The broker refused or lost events; nothing was dropped silently."""

    http_status = 503

    def __init__(self, failed: int, sent: int, first_reason: str) -> None:
        self.failed, self.sent, self.first_reason = failed, sent, first_reason
        super().__init__(
            f"{failed} event(s) were not delivered ({sent} were); first failure: {first_reason}. "
            "Check that the broker is up and the topics exist (`eta up`)."
        )


class NoBrokerConfigured(EtaError):
    http_status = 503

    def __init__(self) -> None:
        super().__init__(
            "ETA_KAFKA_BOOTSTRAP_SERVERS is not set. Start the stack with `eta up` in another "
            "shell and export the settings it prints (export ETA_KAFKA_BOOTSTRAP_SERVERS=... "
            "and ETA_REDIS_URL=...), then run this command again."
        )
