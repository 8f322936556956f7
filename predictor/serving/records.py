"""The shapes records take at the edges of the core: what comes in from a topic, what goes out.

``SourceRecord`` is the reading side of a Kafka message, spelled as confluent-kafka's
``Message`` spells it, so that engine hands its messages to the core without copying; other
engines (and tests) wrap theirs in a ``RawRecord``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["OutRecord", "RawRecord", "SourceRecord"]


class SourceRecord(Protocol):
    """A consumed message: its bytes and where they came from."""

    def value(self) -> bytes | None: ...

    def key(self) -> bytes | None: ...

    def topic(self) -> str | None: ...

    def partition(self) -> int | None: ...

    def offset(self) -> int | None: ...


class RawRecord:
    """A ``SourceRecord`` built from plain values (the Faust engine, tests, tools).

    >>> RawRecord(b'{}', topic="orders", partition=2, offset=7).offset()
    7
    """

    __slots__ = ("_key", "_offset", "_partition", "_topic", "_value")

    def __init__(
        self,
        value: bytes | None,
        topic: str = "",
        partition: int | None = None,
        offset: int | None = None,
        key: bytes | None = None,
    ) -> None:
        self._value, self._topic, self._partition = value, topic, partition
        self._offset, self._key = offset, key

    def __repr__(self) -> str:
        size = None if self._value is None else len(self._value)
        return f"RawRecord({self._topic}[{self._partition}]@{self._offset}, {size} bytes)"

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def topic(self) -> str | None:
        return self._topic

    def partition(self) -> int | None:
        return self._partition

    def offset(self) -> int | None:
        return self._offset


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to produce: the engine picks the topic from which list it is in."""

    key: bytes | None
    value: bytes
