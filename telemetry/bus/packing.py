"""Many log records to one broker message, for the buses whose cost is per message.

The log topics (``raw_logs``, ``events``) carry thousands of small records a
second, and a broker's cost (RabbitMQ's per message, Kafka's per record in
aiokafka's Python decoder) does not depend on their size. Consecutive records
of one key (so per-source order holds) without headers of their own travel as
one message: a msgpack list of their bytes, marked with ``PACK_HEADER``. The
consumer gives each record a delivery of its own; the message counts as done
once all of them are settled, and is given back whole if any was given back
(at least once: records acked beside it come again, and the stores' ids drop
the repeats). Other topics, and records with headers (dead letters), go one to
a message with per-record redelivery.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from itertools import repeat
from typing import Any

import msgpack

from telemetry.bus.base import NO_HEADERS, Delivery, OutMessage
from telemetry.bus.topics import EVENTS, RAW_LOGS

__all__ = ["PACKED_TOPICS", "PACK_HEADER", "Pack", "PackRate", "bodies", "unpack", "unpacked"]

PACK_HEADER = "x-telemetry-pack"
PACK_HEADERS: Mapping[str, str] = {PACK_HEADER: "msgpack"}
#: The topics whose records are packed.
PACKED_TOPICS = frozenset({RAW_LOGS, EVENTS})


#: Bytes msgpack adds to a record in a pack at most (a bin header: marker and 32-bit length).
_ITEM_OVERHEAD = 5


def _pack(values: list[bytes]) -> bytes:
    return msgpack.packb(values, use_bin_type=True)


def bodies(topic: str, messages: Sequence[OutMessage], per: int, max_bytes: int = 1 << 62
           ) -> Iterator[tuple[bytes, bytes | None, Mapping[str, str]]]:
    """(body, key, headers) of each broker message: runs of one key's records on the log topics, of at
    most ``per`` records and, past the first, ``max_bytes`` of their bytes (``bus.pack_bytes``)."""
    if topic not in PACKED_TOPICS or per <= 1:
        for m in messages:
            yield m.value, m.key, m.headers
        return
    run: list[bytes] = []
    run_key: bytes | None = None
    size = 0
    for m in messages:
        if m.headers:  # a record with headers of its own travels alone
            if run:
                yield _pack(run), run_key, PACK_HEADERS
                run = []
            yield m.value, m.key, m.headers
            continue
        n = len(m.value) + _ITEM_OVERHEAD
        if run and (m.key != run_key or len(run) >= per or size + n > max_bytes):
            yield _pack(run), run_key, PACK_HEADERS
            run = []
        if not run:
            size = 0
        run_key = m.key
        run.append(m.value)
        size += n
    if run:
        yield _pack(run), run_key, PACK_HEADERS


def unpack(body: bytes) -> list[bytes] | None:
    """The records of a packed message; None when it is not one (it is then handed on whole, and
    the stage that cannot decode it dead-letters it)."""
    try:
        values = msgpack.unpackb(body, raw=False)
    except Exception:
        return None
    if isinstance(values, list) and values and all(isinstance(v, bytes) for v in values):
        return values
    return None


def unpacked(topic: str, body: bytes, key: bytes | None, redelivered: bool, token: tuple[Any, ...]
             ) -> list[Delivery] | None:
    """A packed message's deliveries, one a record, each with the message's ``token`` followed by
    its Pack and index; None when the body is not a pack (see ``unpack``)."""
    values = unpack(body)
    if values is None:
        return None
    head = (*token, Pack(len(values)))
    # Built by map over a partial, sharing the empty headers (consumers only read them): a comprehension
    # calling Delivery with a new dict each was 0.64 µs a record, of each of a server's four consumers.
    return list(map(partial(Delivery, topic), values, repeat(key), repeat(NO_HEADERS), repeat(redelivered),
                    [(*head, i) for i in range(len(values))]))


class PackRate:
    """Records per packed message lately, for a consumer that asks its broker for messages but wants
    records: a pack holds ``records_per_message`` at most, and far fewer when many hosts each send a
    little (a pack is one key's run). Counting every pack as full, a stage of a cloud's thousand
    agents was handed a pack of a dozen records per fetch, and paid a batch's fixed cost for each."""

    __slots__ = ("avg",)

    def __init__(self, per: int) -> None:
        self.avg = float(per)

    def saw(self, records: int) -> None:
        """One packed message came with ``records`` records (a moving average over the last few dozen)."""
        self.avg += (records - self.avg) * 0.1

    def messages_for(self, records: int) -> int:
        """Messages that hold about ``records`` records, at least one."""
        return max(1, int(records / max(self.avg, 1.0)))


class Pack:
    """The broker message behind several deliveries: done once each of them is settled."""

    __slots__ = ("left", "requeue", "settled")

    def __init__(self, n: int) -> None:
        self.left, self.requeue = n, False
        self.settled: set[int] = set()

    def settle(self, index: int, requeue: bool) -> bool:
        """Settle one record (given back when ``requeue``); True once the whole message is."""
        if index in self.settled:
            return False
        self.settled.add(index)
        self.left -= 1
        self.requeue |= requeue
        return self.left == 0
