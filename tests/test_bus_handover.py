"""A stage's intake of deliveries handed over in the process (``telemetry.bus.handover``)."""

from __future__ import annotations

from telemetry.bus import Delivery
from telemetry.bus.handover import handed_over


def test_records_and_counts_by_topic_or_none_when_one_came_as_bytes() -> None:
    ds = [Delivery("events", b"", record={"id": "a"}), Delivery("events", b"", redelivered=True, record={"id": "b"}),
          Delivery("samples", b"", record={"id": "c"}), Delivery("events", b"", record={"id": "d"})]
    got = handed_over(ds)
    assert got is not None
    records, by_topic, again = got
    assert records == [(d, d.record) for d in ds]
    assert by_topic == {"events": 3, "samples": 1} and again == {"events": 1}
    assert handed_over([]) == ([], {}, {})
    assert handed_over([*ds, Delivery("events", b'{"id": "e"}')]) is None  # from a broker: decoded one by one
