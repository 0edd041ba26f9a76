"""One query language, three evaluators: in memory (alarms), SQLite and PostgreSQL (search) must agree."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telemetry.events.predicate import compile_predicate
from telemetry.events.query import QueryError
from events_support import make_event_store  # noqa: F401 (fixture)
from store_support import pg_database  # noqa: F401 (fixture)

from telemetry.events.backend import EventBackend

# The fixture `store` and its events come from the store tests (on SQLite and on PostgreSQL).
from tests.test_events_store import store  # noqa: F401

QUERIES = [
    "component:glance",
    "level:error",
    "level:ERROR AND component:nova",
    "NOT level:INFO",
    "component:gl*",
    "component:?ova",
    "spawn",
    '"failed to spawn"',
    "libvirt.libvirtError",
    "Creat*",
    "status:500",
    "status:204",
    "status:[200 TO 499]",
    "status:{200 TO 500}",
    "status:>=500",
    "status:*",
    "NOT status:*",
    "tags:_grokparsefailure",
    "event_type:compute.instance.create.*",
    "request_id:req-g1 OR request_id:req-g2",
    "(level:WARNING OR level:ERROR) AND host:cn01",
    "host:(cc01 OR cn01) AND -component:nova",
    "@timestamp:[2026-03-02T09:15:00Z TO 2026-03-02T09:17:00Z]",
    "verb:get",
    "example",  # a word inside cn01.example.org
    "images",  # a word inside /v2/images
    '"Took 14.21 seconds"',
    "libvirt*",
    "*ail?d*",
    "status:[200 TO 204]",
    "pid:31842",
    "pid:[31000 TO 32000]",
    "memory_mb:>1024",
]


@pytest.mark.parametrize("query", QUERIES)
def test_memory_and_sql_agree(store: EventBackend, query: str) -> None:
    everything = store.search(None, limit=10_000)
    assert len(everything) >= 10
    by_sql = sorted(r["id"] for r in store.search(query, limit=10_000))
    pred = compile_predicate(query)
    in_memory = sorted(r["id"] for r in everything if pred(r))
    assert in_memory == by_sql, query


def test_errors_name_the_position() -> None:
    with pytest.raises(QueryError) as ei:
        compile_predicate("level:ERROR AND (component:nova")
    assert ei.value.position > 0
    with pytest.raises(QueryError):
        compile_predicate("@timestamp:2026*")


def test_nested_fields_and_lists_in_memory() -> None:
    assert compile_predicate("payload.state:error")({"payload": {"state": "error"}})
    assert compile_predicate("status:204")({"status": [200, 204]})
    assert not compile_predicate("status:500")({"status": [200, 204]})
    assert compile_predicate("NOT status:500")({})
    assert compile_predicate("")({"anything": 1})


_WORDS = ["no", "valid", "host", "novalidhost", "Node", "spawn", "straße", "STRASSE", "found", "nova"]


@given(st.lists(st.lists(st.sampled_from([*_WORDS, "x", ":", " ", ".", "-"]), max_size=12).map("".join),
                min_size=1, max_size=4),
       st.lists(st.lists(st.sampled_from(_WORDS), min_size=1, max_size=3), min_size=1, max_size=3),
       st.booleans())
def test_free_text_decided_by_substrings_agrees_with_splitting_every_message(
        messages: list[str], needles: list[list[str]], prefix: bool) -> None:
    """The substring shortcut and the per-event cache of the folded message change no answer.

    The reference splits each message into words for every term, as the matcher did before
    it learnt to rule events out by substring and to fold a message once for all terms. The
    same message object goes past every term in turn (as through the log alarms), then the next.
    """
    import re

    def reference(message: str, needle: list[str]) -> bool:
        hay = re.findall(r"\w+", message.casefold())
        want = re.findall(r"\w+", " ".join(needle).casefold())
        n = len(want)
        return n > 0 and any(hay[i:i + n - 1] == want[:-1] and (
            hay[i + n - 1] == want[-1] or (prefix and hay[i + n - 1].startswith(want[-1])))
            for i in range(len(hay) - n + 1))

    terms = [(f'"{" ".join(n)}"' + ("*" if prefix else "")) if len(n) > 1 or not prefix else f"{n[0]}*"
             for n in needles]
    preds = [compile_predicate(t) for t in terms]
    for message in messages:
        event = {"message": message}
        for needle, pred in zip(needles, preds):
            assert pred(event) == reference(message, needle), (message, needle, prefix)
