"""The quick path (``telemetry.parse.quick``) gives exactly what the general path gives, key order included.

The general path is the same Parser with no quick types; every comparison is of
``list(d.items())``, so a field in another place is a failure too.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry import _native
from telemetry.collect.multiline import make_joiner
from telemetry.parse import Parser
from telemetry.parse.budget import armed
from telemetry.parse.quick import quick_event

NOW = datetime(2026, 3, 10, 12, 0, 1, 250000, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def parsers() -> tuple[Parser, Parser]:
    quick, general = Parser(), Parser()
    general._quick = {}
    return quick, general


def outcome(parser: Parser, *args: Any, **kwargs: Any) -> Any:
    try:
        got = parser.parse_dict(*args, **kwargs)
    except Exception as exc:  # the general path's own errors: the quick path must raise the same
        return type(exc).__name__
    return None if got is None else list(got.items())


def same(parsers: tuple[Parser, Parser], *args: Any, **kwargs: Any) -> None:
    quick, general = parsers
    assert outcome(quick, *args, **kwargs) == outcome(general, *args, **kwargs), (args, kwargs)


def test_the_common_types_are_quick(parsers: tuple[Parser, Parser]) -> None:
    quick, _ = parsers
    assert {"openstack", "apache", "nginx", "rabbitmq", "mariadb", "libvirt", "ovs", "ceph"} <= set(quick._quick)
    assert "json" not in quick._quick and "syslog" not in quick._quick
    line = "2026-03-02 09:14:07.112 31842 INFO nova.compute.claims [-] Claim successful"
    with armed():
        caps, tags, normalise_as, _ = quick._grok(line, "openstack", None)
    assert not tags and quick_event(line, normalise_as, caps, {"path": "/var/log/nova.log", "tags": []}, "", NOW,
                                    True, timezone.utc) is not None


#: Sample file -> the type its lines are read as.
SAMPLE_TYPES = {"ceilometer-api.log": "openstack", "cinder-volume.log": "openstack", "glance-api.log": "openstack",
                "heat-engine.log": "openstack", "keystone.log": "openstack", "neutron-server.log": "openstack",
                "nova-compute.log": "openstack", "nova-conductor-kilo.log": "openstack", "haproxy.log": "haproxy",
                "horizon-access.log": "apache", "libvirtd.log": "libvirt", "mariadb.log": "mariadb",
                "ovs-vswitchd.log": "ovs", "rabbitmq.log": "rabbitmq", "swift-proxy.log": "swift", "syslog": "syslog"}


def test_every_sample_line_under_every_type(parsers: tuple[Parser, Parser], samples_dir: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Each sample entry as its own type and as every other (failures, other captures), with the
    fields a file source gives, an id or none, a read time or none."""
    import telemetry.parse.parser as parser_module

    quick, _ = parsers
    built = []

    def counted(*args: Any) -> dict[str, Any] | None:
        out = quick_event(*args)
        built.append(out is not None)
        return out

    monkeypatch.setattr(parser_module, "quick_event", counted)
    fields_choices: list[dict[str, Any] | None] = [
        None, {"host": "cn01", "component": "", "path": "/var/log/x.log", "tags": []},
        {"host": "", "component": "nova", "path": "", "tags": ["from-file"], "region": "r1"}]
    checked = 0
    with armed():
        for path in sorted((samples_dir / "logs").iterdir()):
            joiner = make_joiner("python")
            entries = []
            for line in path.read_text().splitlines():
                entries += joiner.feed(line, 0, 0)
            entries += joiner.flush()
            for type_ in sorted({SAMPLE_TYPES.get(path.name, "openstack"), *quick.types}):
                for i, e in enumerate(entries):
                    fields = fields_choices[i % 3]
                    same(parsers, e.lines, type_, fields, event_id="rawlog-1" if i % 2 else "", now=NOW,
                         with_id=bool(i % 4))
                    checked += 1
    assert checked > 900
    # The quick path built many of them (109 with the samples of now). Compiled, the parser calls
    # quick_event directly, past the patch: tests/test_native.py runs this file as Python, which counts.
    assert _native.active or sum(built) > 50


def test_generated_oslo_lines(parsers: tuple[Parser, Parser]) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    from grok import generate  # the benchmark's lines: contexts, instances, access lines

    with armed():
        for line in generate(3000, 11):
            same(parsers, line, "openstack", {"path": "/var/log/nova/nova-api.log", "tags": []}, with_id=False)


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
_VALUE = st.one_of(st.none(), st.just(""), _TEXT, st.integers(), st.floats(), st.lists(_TEXT, max_size=2),
                   st.dictionaries(_TEXT, _TEXT, max_size=2))
_KEYS = st.sampled_from(["host", "component", "path", "tags", "id", "@timestamp", "pid", "message", "type", "level",
                         "request_id", "region", "log_path", "timestamp"])
_STAMPS = st.sampled_from(["2026-03-02 09:14:07.112", "2026-03-02 09:14:07", "2026-13-02 09:14:07.112",
                           "2026-03-02T09:14:07.112+02:00", "2026-03-02 24:00:00.000", "Mar  2 09:14:07"])
_PIDS = st.sampled_from(["31842", "0", "9" * 18, "9" * 19, "99999999999999999999", "1" * 25])
_TAILS = st.sampled_from([
    "Claim successful", '10.0.0.11 "GET /v2.0/ports HTTP/1.1" status: 200  len: 1093 time: 0.0851240',
    '10.0.0.11 "GET /x HTTP/1.1" status: 99999999999999999999999  len: 1 time: inf',
    "10.0.0.1 - - [02/Mar/2026:09:14:07 +0000] \"GET /v3 HTTP/1.1\" 200 12 0.1", "", "é ü \x00"])


@settings(max_examples=300, deadline=None)
@given(stamp=_STAMPS, pid=_PIDS, level=st.sampled_from(["INFO", "warn", "TRACE", "X"]),
       logger=st.sampled_from(["nova.compute.manager", "oslo.messaging", "x"]),
       ctx=st.sampled_from(["[-] ", "[req-7d1e2a40-5b3c-4f0e-9a55-0c2d6b3e8f11 - - - - -] ", ""]),
       tail=_TAILS, fields=st.one_of(st.none(), st.dictionaries(_KEYS, _VALUE, max_size=5)),
       event_id=st.one_of(st.just(""), _TEXT, st.integers()), with_id=st.booleans(),
       now=st.sampled_from([None, NOW, NOW.astimezone(timezone(timedelta(hours=2))), NOW.replace(tzinfo=None)]))
def test_arbitrary_entries_and_fields(parsers: tuple[Parser, Parser], stamp: str, pid: str, level: str, logger: str,
                                      ctx: str, tail: str, fields: dict[str, Any] | None, event_id: Any,
                                      with_id: bool, now: datetime | None) -> None:
    line = f"{stamp} {pid} {level} {logger} {ctx}{tail}"
    with armed():
        if now is None:  # the general path's "now" would differ by the call's instant: only events with a time
            quick, general = parsers
            a, b = outcome(quick, line, "openstack", fields, event_id, None, with_id), \
                outcome(general, line, "openstack", fields, event_id, None, with_id)
            if isinstance(a, list) and isinstance(b, list):
                assert [k for k, _ in a] == [k for k, _ in b]
            else:
                assert a == b
            return
        same(parsers, line, "openstack", fields, event_id, now, with_id)
