"""Exactly-once for the confluent engine: a batch's records and offsets in one transaction.

Records produced inside a transaction and the consumer offsets sent with it become visible
(``isolation.level=read_committed``) and committed together, or not at all. An abortable
error aborts the transaction and the caller reads the batch again; a fatal one (e.g. this
producer was fenced by a newer instance) is raised.
"""

from __future__ import annotations

import logging

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from predictor.serving.commits import TopicPartitionKey
from predictor.serving.pipeline import BatchResult
from stream_features.produce import produce_all

__all__ = ["produce_in_transaction"]

log = logging.getLogger("etastream.stream")


def produce_in_transaction(
    producer: Producer,
    consumer: Consumer,
    result: BatchResult,
    nxt: dict[TopicPartitionKey, int],
    predictions_topic: str,
    dlq_topic: str,
    timeout_s: float,
) -> bool:
    """Produce the batch and commit its offsets atomically; False when it was aborted."""
    offsets = [TopicPartition(t, p, o) for (t, p), o in nxt.items()]
    try:
        producer.begin_transaction()
        for topic, records in (
            (predictions_topic, result.predictions),
            (dlq_topic, result.dead_letters),
        ):
            produce_all(producer, topic, [(out.key, out.value) for out in records])
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), timeout_s)
        producer.commit_transaction(timeout_s)  # flushes; a failed record fails the commit
    except KafkaException as exc:
        err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if err is None or err.fatal() or not (err.txn_requires_abort() or err.retriable()):
            raise
        log.warning("transaction aborted; the batch will be read again", extra={"error": str(exc)})
        producer.abort_transaction(timeout_s)
        return False
    return True
