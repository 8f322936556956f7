"""Transports around the streaming core: Kafka engines that only move bytes.

``confluent`` (the default) drives confluent-kafka directly; ``faust_app`` runs the same core as
a Faust agent and is imported only when asked for (``pip install etastream[faust]``).
"""

from __future__ import annotations

__all__: list[str] = []
