"""Multi-line joining of oslo tracebacks and Logstash-style rules."""

from __future__ import annotations

from pathlib import Path

from telemetry.collect.multiline import LogstashJoiner, make_joiner


def join_file(path: Path, spec: object = "python"):
    j = make_joiner(spec)
    out, off = [], 0
    with path.open("rb") as f:
        for raw in f:
            end = off + len(raw)
            out += j.feed(raw.decode().rstrip("\n"), off, end)
            off = end
    return out + j.flush()


def test_modern_traceback_is_one_entry(samples_dir: Path) -> None:
    entries = join_file(samples_dir / "logs" / "nova-compute.log")
    tb = [e for e in entries if any("Traceback" in line for line in e.lines)]
    assert len(tb) == 1
    assert tb[0].lines[0].startswith("2026-03-02 09:16:40.005 31842 ERROR nova.compute.manager [req-c0ffee00")
    assert any("libvirt.libvirtError" in line for line in tb[0].lines)
    assert len(entries) == 8  # 15 lines, 8 of them one traceback


def test_kilo_trace_is_one_entry(samples_dir: Path) -> None:
    entries = join_file(samples_dir / "logs" / "ceilometer-api.log")
    assert len(entries) == 2
    assert entries[0].lines[0].split()[3] == "CRITICAL"
    assert all(" TRACE " in line for line in entries[0].lines[1:])
    assert entries[1].lines[0].endswith("Starting server in PID 2702")


def test_offsets_cover_the_file(samples_dir: Path) -> None:
    path = samples_dir / "logs" / "nova-compute.log"
    entries = join_file(path)
    assert entries[0].offset == 0
    assert entries[-1].end == path.stat().st_size
    for a, b in zip(entries, entries[1:]):
        assert a.end == b.offset


def test_same_second_different_records_stay_apart() -> None:
    j = make_joiner("python")
    a = j.feed("2026-03-02 09:00:00.001 10 INFO nova.a [-] one", 0, 10)
    b = j.feed("2026-03-02 09:00:00.001 10 INFO nova.b [-] two", 10, 20)
    c = j.feed("2026-03-02 09:00:00.001 11 INFO nova.b [-] three", 20, 30)
    assert len(a) == 0 and len(b) == 1 and len(c) == 1 and len(j.flush()) == 1


def test_logstash_previous_and_next() -> None:
    j = LogstashJoiner(r"^\s", what="previous")
    out = []
    for i, line in enumerate(["head 1", "  cont", "  cont", "head 2"]):
        out += j.feed(line, i, i + 1)
    out += j.flush()
    assert [len(e.lines) for e in out] == [3, 1]

    j = LogstashJoiner(r"\\$", what="next")
    out = []
    for i, line in enumerate(["a \\", "b \\", "c", "d"]):
        out += j.feed(line, i, i + 1)
    out += j.flush()
    assert [e.lines for e in out] == [["a \\", "b \\", "c"], ["d"]]


def test_negate_and_limits() -> None:
    j = make_joiner({"pattern": r"^\d{4}-", "negate": True, "what": "previous"}, max_lines=3)
    out = []
    for i, line in enumerate(["2026-01-01 x", "a", "b", "c", "2026-01-02 y"]):
        out += j.feed(line, i, i + 1)
    out += j.flush()
    assert out[0].lines == ["2026-01-01 x", "a", "b"] and "multiline_truncated" in out[0].tags
    assert out[-1].lines == ["2026-01-02 y"]


def test_idle_flush() -> None:
    j = make_joiner("python")
    j.feed("2026-03-02 09:00:00.001 10 ERROR nova.a [-] boom", 0, 10)
    assert j.pending_offset() == 0
    assert j.idle(5.0, now=j.last_feed + 6)
    assert not j.idle(5.0, now=j.last_feed + 1)
