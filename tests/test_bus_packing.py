"""How log records are packed into broker messages: by count, by bytes, by key, and read back."""

from __future__ import annotations

import pytest

from telemetry.bus.base import OutMessage
from telemetry.bus.packing import PACK_HEADER, PackRate, bodies, unpack
from telemetry.config import ConfigError, validate


def _messages(sizes: list[int], key: bytes = b"cn01") -> list[OutMessage]:
    return [OutMessage(value=b"%05d" % i + b"x" * (n - 5), key=key) for i, n in enumerate(sizes)]


def _records(out: list[tuple[bytes, bytes | None, object]]) -> list[list[bytes]]:
    packs = []
    for body, _, headers in out:
        assert PACK_HEADER in headers  # type: ignore[operator]
        values = unpack(body)
        assert values is not None
        packs.append(values)
    return packs


def test_a_pack_stops_at_its_bytes_before_its_count() -> None:
    sent = _messages([100] * 50)
    packs = _records(list(bodies("events", sent, per=1000, max_bytes=1000)))
    assert [v for p in packs for v in p] == [m.value for m in sent]  # every record, in order
    assert all(len(p) == 9 for p in packs[:-1])  # 9 of 105 bytes (a record and msgpack's header) fit in 1000
    assert all(len(body) <= 1000 + 5 for body, _, _ in bodies("events", sent, per=1000, max_bytes=1000))


def test_a_pack_stops_at_its_count_and_at_a_new_key() -> None:
    sent = _messages([10] * 7, b"cn01") + _messages([10] * 3, b"cn02")
    out = list(bodies("raw_logs", sent, per=4))
    assert [len(p) for p in _records(out)] == [4, 3, 3]
    assert [key for _, key, _ in out] == [b"cn01", b"cn01", b"cn02"]


def test_a_record_larger_than_a_pack_travels_alone() -> None:
    sent = _messages([100, 5000, 100, 100])
    packs = _records(list(bodies("raw_logs", sent, per=1000, max_bytes=1000)))
    assert [len(p) for p in packs] == [1, 1, 2]
    assert [v for p in packs for v in p] == [m.value for m in sent]


def test_other_topics_and_records_with_headers_are_never_packed() -> None:
    sent = _messages([10] * 3)
    assert [body for body, _, _ in bodies("samples", sent, per=1000)] == [m.value for m in sent]
    dead = OutMessage(value=b"bad", key=b"cn01", headers={"x-reason": "unparseable"})
    out = list(bodies("events", [*sent, dead, *sent], per=1000))
    assert [len(unpack(body) or []) if PACK_HEADER in h else body for body, _, h in out] == [3, b"bad", 3]


@pytest.mark.parametrize("size", [0, 1 << 20])
def test_pack_bytes_outside_what_a_broker_takes_is_refused(size: int) -> None:
    with pytest.raises(ConfigError) as ei:
        validate({"bus": {"pack_bytes": size}})
    assert ei.value.problems[0].path == "bus.pack_bytes"
    if size:
        assert "Kafka's 1 MiB" in ei.value.problems[0].message


def test_the_messages_asked_for_follow_the_packs_sizes() -> None:
    rate = PackRate(500)
    assert rate.messages_for(500) == 1 and rate.messages_for(20_000) == 40  # full packs until one came
    for _ in range(60):
        rate.saw(10)
    assert 45 <= rate.messages_for(500) <= 50  # packs of ten: about fifty of them
    for _ in range(60):
        rate.saw(500)
    assert rate.messages_for(500) == 1
    assert PackRate(0).messages_for(3) == 3  # never divided by less than one record a message
