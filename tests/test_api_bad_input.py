"""Odd input the API used to answer with 500, or store and then fail on (issue 20): now a 400 naming the field."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from telemetry.bounds import TooComplex, check_shape
from telemetry.events.query import QueryError, parse_query
from tests.conftest import DaemonProcess

SAMPLE = ('[{"counter_name":"m","counter_type":"gauge","counter_unit":"u","counter_volume":%s,"resource_id":"r"'
          '%s}]')


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    d = DaemonProcess(tmp_path_factory.mktemp("bad-input"), "run", {"sources": {
        "files": [], "ceilometer": {"enabled": False}, "zabbix": {"trapper": "127.0.0.1:0", "passive": "127.0.0.1:0"}}})
    d.start()
    try:
        yield d
    finally:
        d.kill()


GETS = [
    ("/v2/meters", {"limit": "²"}, "limit must be a positive integer"),
    ("/v2/samples", {"limit": "²"}, "limit must be a positive integer"),
    ("/v1/events", {"limit": "²"}, "limit"),
    ("/v1/events", {"start": "99999999999999999999"}, "start: not a time"),
    ("/v1/events", {"end": "1e20h"}, "end: not a time"),
    ("/v1/events", {"q": "(" * 400 + "a" + ")" * 400}, "nested deeper than 32"),
    ("/v1/events", {"q": "NOT " * 300 + "a"}, "nested deeper than 32"),
    ("/v2/alarms", {"limit": "-1"}, "limit"),
    ("/v2/alarms/x/history", {"limit": "99999999999999999999999"}, "limit"),
]


@pytest.mark.parametrize("path,params,expected", GETS, ids=[f"{p} {list(q.values())[0][:12]}" for p, q, _ in GETS])
def test_odd_query_parameters_are_400(daemon: DaemonProcess, path: str, params: dict, expected: str) -> None:
    r = httpx.get(daemon.url + path, params=params, timeout=30)
    assert r.status_code == 400 and expected in r.json()["error_message"]["faultstring"], r.text


POSTS = [
    ("/v1/events", '[{"@timestamp":"2026-01-01T00:00:00Z","message":"\\ud800"}]', "message holds an unpaired surrogate"),
    ("/v1/events", '[{"@timestamp":"2026-01-01T00:00:00Z","message":"x","n":12345678901234567890123456}]',
     "n is an integer beyond 64 bits"),
    ("/v2/meters/m", SAMPLE % ("NaN", ""), "[0].counter_volume: Input should be a finite number"),
    ("/v2/meters/m", SAMPLE % ("1e400", ""), "[0].counter_volume: Input should be a finite number"),
    ("/v2/meters/m", SAMPLE % ("1", ',"resource_metadata":{"a":[1, 12345678901234567890123456]}'),
     "resource_metadata a[1] is an integer beyond 64 bits"),
    ("/v1/events", "[" * 5000 + "]" * 5000, "the body nests deeper than can be read (a record may nest 32 levels)"),
    ("/v2/meters/m", "[" * 5000 + "]" * 5000, "the body nests deeper than can be read"),
    ("/v2/alarms", '{"a":' * 5000 + "1" + "}" * 5000, "the body nests deeper than can be read"),
    ("/v2/alarms", '{"name":"n","type":"threshold","threshold_rule":{"meter_name":"m","threshold":NaN}}',
     "threshold_rule.threshold is not a finite number"),
    ("/v2/alarms", '{"name":"\\ud800","type":"threshold","threshold_rule":{"meter_name":"m","threshold":1}}',
     "name holds an unpaired surrogate"),
]


@pytest.mark.parametrize("path,body,expected", POSTS, ids=[f"{p} {b[:40]}" for p, b, _ in POSTS])
def test_odd_bodies_are_400_and_nothing_is_stored(daemon: DaemonProcess, path: str, body: str, expected: str) -> None:
    r = httpx.post(daemon.url + path, content=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 400 and expected in r.json()["error_message"]["faultstring"], r.text
    assert httpx.get(daemon.url + "/healthz", timeout=5).json()["status"] == "ok"


def test_shape_check_names_the_field_of_each_bad_leaf() -> None:
    for value, message in [({"a": {"b": [1, 2, 10 ** 30]}}, "a.b[2] is an integer beyond 64 bits"),
                           ({"m": float("nan")}, "m is not a finite number"),
                           ({"x": [{"y": "\ud800"}]}, "x[0].y holds an unpaired surrogate"),
                           ({"\udc00k": 1}, "has a key that holds an unpaired surrogate")]:
        with pytest.raises(TooComplex, match=message.replace("[", r"\[").replace("]", r"\]")):
            check_shape(value)
    check_shape({"ok": [1, "é", 2.5, True, None, -(1 << 63), (1 << 64) - 1]})


def test_query_nesting_is_bounded_but_ordinary_groups_parse() -> None:
    assert parse_query("(" * 30 + "a" + ")" * 30) is not None
    with pytest.raises(QueryError, match="nested deeper"):
        parse_query("!" * 40 + "a")
