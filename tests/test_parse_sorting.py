"""The parse stage's sorting of a part's results (``telemetry.parse.sorting``): events with their bus keys,
drops and dead letters counted, and the encoded messages for a broker."""

from __future__ import annotations

from types import SimpleNamespace

from telemetry.bus import Delivery
from telemetry.parse.sorting import Sorted, sort_part


def _event(host: str, type_: str = "openstack", tags: list[str] | None = None) -> dict:
    return {"id": f"e-{host}", "host": host, "type": type_, "tags": tags or [], "message": "m"}


def test_each_kind_of_result_goes_its_way_and_is_counted() -> None:
    deliveries = [Delivery("raw_logs", b"", None, None, False, None, SimpleNamespace(type="nova")) for _ in range(7)]
    records = [(d, d.record) for d in deliveries]
    results = [
        _event("cn01"),
        _event("cn01", tags=["_grokparsefailure"]),
        ("nova",),  # a drop step
        "bad input: no lines",  # the reason it could not become an event
        _event("", type_=""),  # no host: no key; no type: the raw log's
        _event("cn02"),
        ("",),  # a drop of an entry without a type
    ]
    into = Sorted()
    out, events, keys = sort_part(records, results, into)
    assert out == [] and events == [results[0], results[1], results[4], results[5]]
    assert keys == [b"cn01", b"cn01", None, b"cn02"]
    assert into.counts == {("match", "openstack"): 2, ("failure", "openstack"): 1, ("match", "nova"): 1}
    assert into.dropped == {"nova": 1, "none": 1}
    assert into.bad == [(deliveries[3], "bad input: no lines")]

    # Encoded for a broker: (bytes, host, type, outcome); the counts gather over the parts.
    out, events, keys = sort_part(records[:2], [(b"{}", "cn03", "", "timeout"), (b"{}", "", "apache", "match")], into)
    assert events == [] and keys == []
    assert [(m.value, m.key) for m in out] == [(b"{}", b"cn03"), (b"{}", None)]
    assert into.counts[("timeout", "nova")] == 1 and into.counts[("match", "apache")] == 1
