"""Parsing in a worker process gives the events parsing in the daemon gives; a lost worker is replaced.

The stage's use of the workers runs in every daemon test (``parse.workers``
defaults to 1); the fault suite kills a worker under a running daemon.
"""

from __future__ import annotations

import os
import signal
from datetime import datetime, timezone
from pathlib import Path

import pytest

from telemetry.config.parse import ParseConfig
from telemetry.fastcodec import raw_log
from telemetry.models import RawLog
from telemetry.parse.parser import Parser
from telemetry.parse.worker import ParseWorker
from telemetry.stage import environmental
from telemetry.workerproc import WorkerGone

#: Sample files and the type the agent would give them.
FILES = {"nova-compute.log": "openstack", "neutron-server.log": "openstack", "haproxy.log": "haproxy",
         "rabbitmq.log": "rabbitmq", "libvirtd.log": "libvirt", "horizon-access.log": "apache", "syslog": "syslog"}
#: Steps and a time zone, so the worker is seen to build its parser from the section it is given.
CFG = ParseConfig.model_validate({
    "timezone": "Europe/Paris",
    "steps": [{"mutate": {"copy": {"host": "node"}, "add_tag": ["parsed"]}},
              {"if": {"field": "level", "equals": "ERROR"}, "then": [{"mutate": {"add_tag": ["bad"]}}]}],
})


def raws(samples_dir: Path) -> list[RawLog]:
    now = datetime.now(timezone.utc)
    out = []
    for name, type_ in FILES.items():
        for i, line in enumerate((samples_dir / "logs" / name).read_text().splitlines()):
            if line.strip():
                out.append(raw_log(id=f"{name}-{i}", host="cn01", path=f"/var/log/{name}", component="",
                                       type=type_, offset=i, inode=1, lines=[line], read_at=now, tags=["t"],
                                       extra={"region": "r1"}))
    return out


@pytest.fixture
def worker():
    w = ParseWorker(CFG)
    yield w
    w.close()


def test_the_worker_gives_the_events_the_daemon_would(worker: ParseWorker, samples_dir: Path) -> None:
    records = raws(samples_dir)
    assert len(records) > 30
    expected = Parser.from_config(CFG).parse_raws_dicts(records)
    assert worker.parse(records) == expected
    assert all(e["node"] == "cn01" and "parsed" in e["tags"] for e in expected if e)  # the steps ran in the worker
    assert any("bad" in e["tags"] for e in expected if e)


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_for_a_broker_the_worker_encodes_the_events_as_the_stage_would(worker: ParseWorker, samples_dir: Path,
                                                                      fmt: str) -> None:
    """Behind a broker the events come back as the bytes the stage publishes, with its key, type and outcome."""
    import msgpack
    import orjson

    from telemetry.parse.parser import outcome_of
    from telemetry.parse.worker import encode_event

    records = raws(samples_dir)
    expected = Parser.from_config(CFG).parse_raws_dicts(records)
    got = worker.parse(records, fmt)
    assert len(got) == len(expected)
    for ev, out in zip(expected, got):
        assert ev is not None and isinstance(out, tuple) and len(out) == 4
        value, host, type_, outcome = out
        assert value == encode_event(ev, fmt) and (host, type_, outcome) == (ev["host"], ev["type"], outcome_of(ev["tags"]))
        assert (orjson.loads(value) if fmt == "json" else msgpack.unpackb(value)) == ev
    assert {o[3] for o in got} >= {"match"}


def test_a_killed_worker_fails_the_batch_as_environmental_and_is_replaced(worker: ParseWorker,
                                                                          samples_dir: Path) -> None:
    records = raws(samples_dir)[:50]
    proc = worker.child.proc
    assert proc is not None
    worker.child.timeout, worker.budget = 2.0, 0.01
    os.kill(proc.pid, signal.SIGSTOP)  # wedged: the call fails in time instead of hanging the stage
    with pytest.raises(WorkerGone) as err:
        worker.parse(records)
    assert environmental(err.value)
    assert worker.parse(records) == Parser.from_config(CFG).parse_raws_dicts(records)
    assert worker.child.proc is not proc


def test_bytes_from_a_broker_are_decoded_in_the_worker_and_bad_ones_named(samples_dir: Path) -> None:
    """Over a broker the stage hands the records' bytes on undecoded: the worker decodes them, and one
    that is no RawLog comes back with the reason the bus stage would have dead-lettered it with."""
    from telemetry.stage import reject_reason

    cfg = ParseConfig.model_validate({"types": {"openstack": {"steps": [
        {"if": {"field": "level", "equals": "DEBUG"}, "then": [{"drop": None}]}]}}})
    w = ParseWorker(cfg)
    try:
        records = raws(samples_dir)[:20]
        expected = Parser.from_config(cfg).parse_raws_dicts(records)
        bad = b'{"id": "x", "host": 5, "lines": "nope"}'
        got = w.parse([r.to_json() for r in records] + [bad])
        assert got[:-1] == [e if e is not None else (r.type,) for e, r in zip(expected, records)]
        with pytest.raises(Exception) as err:
            from telemetry.models import decode

            decode(RawLog, bad)
        assert got[-1] == reject_reason(err.value) and got[-1].startswith("invalid:")
        assert any(e is None for e in expected)  # a drop step ran: it came back as the entry's type
    finally:
        w.close()


def test_a_read_time_outside_utc_crosses_too(worker: ParseWorker) -> None:
    """``read_at`` crosses as integer microseconds when UTC; any other zone as itself (the batch then pickled)."""
    from zoneinfo import ZoneInfo

    lines = ["no timestamp on this line", "2026-12-04 10:00:00.123 7 INFO nova.api [-] fine"]
    for read_at in (datetime(2026, 12, 4, 9, 30, 0, 654321, tzinfo=timezone.utc),
                    datetime(2026, 12, 4, 10, 30, 0, 654321, tzinfo=ZoneInfo("Europe/Paris"))):
        records = [raw_log(id=f"r{i}", host="h", path="/p", component="", type="openstack", offset=i, inode=1,
                               lines=[line], read_at=read_at, tags=[]) for i, line in enumerate(lines)]
        assert worker.parse(records) == Parser.from_config(CFG).parse_raws_dicts(records)


def test_for_the_bus_in_this_process_the_events_also_come_packed_as_one_list(worker: ParseWorker,
                                                                             samples_dir: Path) -> None:
    """``parse_packed`` gives what ``parse`` gives, and the batch's events once more as the bytes the child
    marshalled (in order): the bytes the event stage hands to the store's writer as they are."""
    import marshal

    records = raws(samples_dir)
    results, packed = worker.parse_packed(records)
    assert results == worker.parse(records) == Parser.from_config(CFG).parse_raws_dicts(records)
    assert packed is not None and marshal.loads(packed) == results  # every entry became an event
    # Entries that become no event (a drop step here) keep their places among the events.
    cfg = ParseConfig.model_validate({"types": {"openstack": {"steps": [
        {"if": {"field": "level", "equals": "DEBUG"}, "then": [{"drop": None}]}]}}})
    w = ParseWorker(cfg)
    try:
        results, packed = w.parse_packed(records)
        expected = Parser.from_config(cfg).parse_raws_dicts(records)
        assert results == [e if e is not None else (r.type,) for e, r in zip(expected, records)]
        assert any(isinstance(r, tuple) for r in results)
        assert packed is not None and marshal.loads(packed) == [e for e in expected if e is not None]
    finally:
        w.close()
