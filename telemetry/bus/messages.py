"""The messages of the bus contract: what a publisher hands over (``OutMessage``) and what a consumer
is handed (``Delivery``).

Apart from the contract's classes (``base``) because one of each is built and read per record on every
hop of the log path: plain classes that mypyc compiles (``telemetry._native``), where building a
delivery costs a third less than as Python. Nothing outside subclasses them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["NO_HEADERS", "Delivery", "OutMessage", "encode_object"]


@dataclass(slots=True)
class OutMessage:
    """A message to publish: ``key`` keeps per-source order within a partition.

    Not frozen: publishers build one per record on hot paths, and a frozen
    dataclass's ``__init__`` costs three times as much; nothing changes a
    message once it is published.

    On a bus in this process (``Bus.in_process``) a publisher may leave
    ``value`` empty and hand over ``record`` (a record, or an event's contract
    dict): consumers take the object as it is, and nothing is encoded or
    decoded between stages of one process. Consumers never change it: every
    consumer group gets the same object.
    """

    value: bytes
    key: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    record: Any = None


#: The headers of a message that has none, shared by all of them: nothing changes a message's
#: headers once it is published, and consumers only read them.
NO_HEADERS: dict[str, str] = {}


def encode_object(record: Any) -> bytes:
    """A record's (or a contract dict's) JSON, for whoever needs bytes of an in-process message.

    Never raises for a value JSON can carry: integers past 64 bits, which orjson
    refuses, go through the standard library's encoder.
    """
    to_json = getattr(record, "to_json", None)
    try:
        return bytes(to_json()) if to_json is not None else orjson.dumps(record, default=str)
    except (TypeError, ValueError):
        data = record.to_dict() if to_json is not None else record
        return json.dumps(data, default=str).encode()


class Delivery:
    """A message handed to a consumer, to be acked or nacked.

    ``record`` is the object an in-process publisher handed over (None from a
    broker); ``value`` is the bytes, encoded from ``record`` on first access
    when the publisher sent none (a dead letter, a test reading raw bytes).
    """

    def __init__(self, topic: str, value: bytes, key: bytes | None = None, headers: dict[str, str] | None = None,
                 redelivered: bool = False, token: Any = None, record: Any = None) -> None:
        self.topic = topic
        self._value = value
        self.key = key
        self.headers = {} if headers is None else headers
        self.redelivered = redelivered
        #: Broker-specific handle used by ack/nack (delivery tag, offset, ...).
        self.token = token
        self.record = record

    @property
    def value(self) -> bytes:
        if not self._value and self.record is not None:
            self._value = encode_object(self.record)
        return self._value

    def __repr__(self) -> str:
        return f"Delivery(topic={self.topic!r}, redelivered={self.redelivered}, {len(self._value)} bytes)"
