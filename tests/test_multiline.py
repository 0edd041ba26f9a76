"""Multi-line joining of oslo tracebacks and Logstash-style rules."""

from __future__ import annotations

import random
from pathlib import Path

from telemetry.collect.multiline import Entry, LogstashJoiner, PythonJoiner, Span, make_joiner


def join_file(path: Path, spec: object = "python"):
    j = make_joiner(spec)
    out, off = [], 0
    with path.open("rb") as f:
        for raw in f:
            end = off + len(raw)
            out += j.feed(raw.decode().rstrip("\n"), off, end)
            off = end
    return out + j.flush()


def join_lines(lines: list[str], j: PythonJoiner | None = None) -> list[Entry]:
    j = j or PythonJoiner()
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line.encode()) + 1)
    return j.feed_many(lines, offsets[:-1], offsets[1:]) + j.flush()


REQ = ("[req-7d1e2a40-5b3c-4f0e-9a55-0c2d6b3e8f11 6f1c0a3b2e8d4d7c9b1a2f3e4d5c6b7a "
       "9a8b7c6d5e4f4a3b2c1d0e9f8a7b6c5d - default default]")
INST = "[instance: 3f6c2b1e-8d4a-4c1b-9e2f-7a6b5c4d3e21]"


def test_modern_traceback_is_one_entry(samples_dir: Path) -> None:
    entries = join_file(samples_dir / "logs" / "nova-compute.log")
    tb = [e for e in entries if any("Traceback" in line for line in e.lines)]
    assert len(tb) == 1
    assert tb[0].lines[0].startswith("2026-03-02 09:16:40.005 31842 ERROR nova.compute.manager [req-c0ffee00")
    assert any("libvirt.libvirtError" in line for line in tb[0].lines)
    assert len(tb[0].lines) == 8  # the ERROR record, its traceback and oslo's closing prefix-only line
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


def test_claims_logged_in_one_millisecond_stay_apart() -> None:
    """nova.compute.claims writes its figures in one millisecond: each is a record of its own."""
    modern = [f"2026-03-02 09:14:07.106 31842 INFO nova.compute.claims {REQ} {INST} {text}" for text in (
        "Total memory: 257754 MB, used: 18944.00 MB", "memory limit not specified, defaulting to unlimited",
        "Total disk: 1862 GB, used: 120.00 GB", "disk limit not specified, defaulting to unlimited",
        "Total vcpu: 64 VCPU, used: 9.00 VCPU", "vcpu limit not specified, defaulting to unlimited")]
    kilo = [f"2015-04-07 20:51:45.124 2691 AUDIT nova.compute.claims [req-8a2f3c44-19b0-4e2d-a1f3-5d6e7f8a9b0c "
            f"admin demo] {INST} {text}" for text in (
                "Total memory: 64401 MB, used: 4608.00 MB", "memory limit: 96601.50 MB, free: 91993.50 MB",
                "Total disk: 1862 GB, used: 120.00 GB", "disk limit not specified, defaulting to unlimited")]
    # Two ERROR records of one logger in one millisecond, each with its context: two records too.
    errors = [f"2026-03-02 09:41:13.230 5120 ERROR oslo.messaging._drivers.impl_rabbit [-] {text}" for text in (
        "AMQP server on 10.0.0.5:5672 is unreachable: [Errno 111] ECONNREFUSED. Trying again in 1 seconds.",
        "AMQP server on 10.0.0.6:5672 is unreachable: [Errno 111] ECONNREFUSED. Trying again in 1 seconds.")]
    for lines in (modern, kilo, errors):
        assert [e.lines for e in join_lines(lines)] == [[line] for line in lines]


def test_exception_prefix_lines_without_a_traceback_header_join() -> None:
    """LOG.exception outside an except block prints ``NoneType: None`` under the prefix."""
    head = "2026-03-02 09:20:31.077 2210 ERROR neutron.plugins.ml2.managers"
    lines = [f"{head} {REQ} Failed to bind port", f"{head} NoneType: None", f"{head} "]
    assert [e.lines for e in join_lines(lines)] == [lines]


def test_chained_exceptions_and_message_lines_stay_one_entry() -> None:
    head = "2026-03-02 09:41:13.230 5120 ERROR cinder.volume.manager"
    tb = ["Traceback (most recent call last):", '  File "/usr/lib/python3/dist-packages/oslo_concurrency/'
          'processutils.py", line 441, in execute', "    raise ProcessExecutionError(",
          "oslo_concurrency.processutils.ProcessExecutionError: Unexpected error while running command.",
          "Command: sudo cinder-rootwrap /etc/cinder/rootwrap.conf lvcreate -n volume-1 cinder-volumes",
          "Exit code: 5", "", "During handling of the above exception, another exception occurred:", "",
          "Traceback (most recent call last):", '  File "/usr/lib/python3/dist-packages/cinder/volume/'
          'manager.py", line 727, in create_volume', "    raise exception.VolumeBackendAPIException(data=msg)",
          "cinder.exception.VolumeBackendAPIException: Bad or unexpected response from the storage volume backend",
          ""]
    lines = [f"{head} {REQ} Failed to create volume"] + [f"{head} {t}" for t in tb]
    lines.append("2026-03-02 09:41:13.231 5120 ERROR cinder.service [-] Manager for service cinder-volume "
                 "st01@lvm is reporting problems, not sending heartbeat.")
    assert [e.lines for e in join_lines(lines)] == [lines[:-1], lines[-1:]]


def test_lines_without_a_prefix_continue_the_last_entry() -> None:
    lines = ["2026-03-02 09:00:00.001 10 INFO nova.api [-] config:", "  a = 1", "  b = 2",
             "Traceback (most recent call last):", '  File "x.py", line 1, in <module>', "ValueError: x",
             "2026-03-02 09:00:00.002 10 INFO nova.api [-] next"]
    assert [len(e.lines) for e in join_lines(lines)] == [6, 1]


def test_interleaved_tracebacks_of_two_processes_are_two_entries() -> None:
    """Two neutron-server workers write one file: each traceback comes out whole, in its own entry."""
    def record(pid: int, exc: str) -> list[str]:
        head = f"2026-03-02 09:20:31.077 {pid} ERROR neutron.plugins.ml2.managers"
        return [f"{head} {REQ} Failed to bind port on host cn0{pid % 10}",
                f"{head} Traceback (most recent call last):",
                f'{head}   File "/usr/lib/python3/dist-packages/neutron/plugins/ml2/managers.py", line 808, '
                "in _bind_port_level", f"{head}     driver.obj.bind_port(context)", f"{head} {exc}", f"{head} "]
    a, b = record(2210, "KeyError: 'segmentation_id'"), record(2211, "ValueError: bad vlan")
    mixed = [line for pair in zip(a, b) for line in pair]
    entries = join_lines(mixed)
    assert sorted(e.lines for e in entries) == sorted([a, b])
    first = min(entries, key=lambda e: e.offset)
    assert first.segments is not None  # the other worker's lines lie between its lines


def test_ready_ships_complete_entries_at_once_and_waits_for_an_open_traceback() -> None:
    j = PythonJoiner()
    line = "2026-03-02 09:00:00.001 10 ERROR nova.compute.manager [-] Instance failed to spawn"
    assert j.feed(line, 0, 100) == []
    assert [e.lines for e in j.ready(timeout=2.0)] == [[line]]  # the last line of a file: shipped now
    prefix = "2026-03-02 09:00:00.002 10 ERROR nova.compute.manager "
    j.feed(prefix + "[-] Instance failed to spawn", 100, 200)
    j.feed(prefix + "Traceback (most recent call last):", 200, 300)
    j.feed(prefix + '  File "/usr/lib/python3/dist-packages/nova/compute/manager.py", line 2743', 300, 400)
    assert j.ready(timeout=2.0) == [] and j.pending_offset() == 100  # more must follow
    assert [len(e.lines) for e in j.ready(timeout=2.0, now=j.pending["10"].touched + 2.5)] == [3]


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


def test_rule_joiner_waits_for_the_flush_timer() -> None:
    j = make_joiner({"pattern": r"^\s", "what": "previous"})
    j.feed("head", 0, 5)
    assert j.pending_offset() == 0
    assert j.ready(5.0, now=j.last_feed + 1) == []
    assert [e.lines for e in j.ready(5.0, now=j.last_feed + 6)] == [["head"]]


# -- restarts: resume points and skips --------------------------------------------------------

def _workload(rng: random.Random, n_records: int) -> list[str]:
    """Records of three processes of one service, their lines interleaved as concurrent writers do."""
    streams: dict[int, list[str]] = {}
    for k in range(n_records):
        pid = rng.choice((301, 302, 303))
        head = f"2026-03-02 09:00:{k // 1000:02d}.{k % 1000:03d} {pid}"
        lines = [f"{head} INFO nova.api.wsgi {REQ} line {k}"]
        if rng.random() < 0.4:
            lines[0] = f"{head} ERROR nova.api.wsgi {REQ} line {k} failed"
            lines += [f"{head} ERROR nova.api.wsgi Traceback (most recent call last): {k}",
                      f'{head} ERROR nova.api.wsgi   File "x.py", line {k}, in f',
                      f"{head} ERROR nova.api.wsgi ValueError: {k}", f"{head} ERROR nova.api.wsgi "]
        streams.setdefault(pid, []).extend(lines)
    out: list[str] = []
    while streams:
        pid = rng.choice(sorted(streams))
        take = rng.randint(1, 3)
        out += streams[pid][:take]
        del streams[pid][:take]
        if not streams[pid]:
            del streams[pid]
    return out


def _replay(lines: list[str], crash_after: int) -> tuple[list[Entry], list[Entry]]:
    """Ship entries until ``crash_after`` of them went out, "restart" from the last one's resume point
    with its skips (as the checkpoint keeps them), and ship the rest."""
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    j = PythonJoiner(max_lines=10)
    before: list[Entry] = []
    skips: list[Span] = []
    resume = 0
    for i, line in enumerate(lines):
        for e in j.feed(line, offsets[i], offsets[i + 1]):
            if len(before) == crash_after:
                break
            before.append(e)
            skips = [s for s in skips + list(e.skips) if s[0] >= e.resume]
            resume = e.resume
        if len(before) == crash_after:
            break
    j = PythonJoiner(max_lines=10)
    after: list[Entry] = []
    for i, line in enumerate(lines):
        if offsets[i] < resume or any(a <= offsets[i] < b for a, b in skips):
            continue
        after += j.feed(line, offsets[i], offsets[i + 1])
    return before, after + j.flush()


def test_a_restart_at_any_entry_ships_every_line_once() -> None:
    """Whatever entry the agent was killed after, re-reading from its resume point without its skips
    ships each line exactly once (an entry re-sent whole has the same first offset, so the same id)."""
    for seed in range(20):
        rng = random.Random(seed)
        lines = _workload(rng, 40)
        total = len(join_lines(lines, PythonJoiner(max_lines=10)))
        for crash_after in range(total + 1):
            before, after = _replay(lines, crash_after)
            by_offset = {e.offset: e for e in before}
            shipped = [e for e in before] + [e for e in after if e.offset not in by_offset]
            for e in after:
                if e.offset in by_offset:  # re-sent: deduplicated downstream on the id, must be the same
                    assert e.lines == by_offset[e.offset].lines, (seed, crash_after)
            got = sorted(line for e in shipped for line in e.lines)
            assert got == sorted(lines), (seed, crash_after)


def test_the_layout_shortcut_joins_as_the_prefix_regex_does(samples_dir: Path) -> None:
    """Lines laid out as the record before them, or as an earlier record of another of the file's processes
    (the workload interleaves three), skip the regex: the entries must be the same."""
    logs = [p.read_text().splitlines() for p in sorted((samples_dir / "logs").glob("*.log"))]
    for seed in range(5):
        logs.append(_workload(random.Random(seed), 60))
    for lines in logs:
        shortcut = join_lines(lines)
        j = PythonJoiner()
        offsets = [0]
        for line in lines:
            offsets.append(offsets[-1] + len(line.encode()) + 1)
        regex_only = []
        for i, line in enumerate(lines):
            j._layout = (0, "\0", "")  # no layout known: every line goes through OSLO_HEAD
            j._markers.clear()
            regex_only += j.feed(line, offsets[i], offsets[i + 1])
        regex_only += j.flush()
        assert [(e.offset, e.lines, e.resume) for e in shortcut] == \
            [(e.offset, e.lines, e.resume) for e in regex_only]


def test_the_first_pending_entry_starts_lowest() -> None:
    """``_done`` takes the resume point from the first pending entry, not a min over all of them:
    entries are made in file order and a completed one leaves, so the first must start lowest."""
    for seed in range(10):
        lines = _workload(random.Random(seed), 80)
        j = PythonJoiner(max_lines=10)
        offset = 0
        for line in lines:
            j.feed(line, offset, offset + len(line) + 1)
            offset += len(line) + 1
            if j.pending:
                assert next(iter(j.pending.values())).offset == min(p.offset for p in j.pending.values())


def test_marks_keep_the_skips_each_resume_point_needs() -> None:
    """``skips_per_entry`` (insort and a cut, for ``FileReader.marks``) gives, per entry, the sorted skips
    at or past its resume point, as sorting everything and filtering each time did."""
    from telemetry.collect.reader import skips_per_entry

    for seed in range(10):
        lines = _workload(random.Random(seed), 80)
        offsets = [0]
        for line in lines:
            offsets.append(offsets[-1] + len(line) + 1)
        j = PythonJoiner(max_lines=10)
        acc: list[Span] = []
        want_acc: list[Span] = []
        for i in range(0, len(lines), 7):
            entries = j.feed_many(lines[i:i + 7], offsets[i:i + 7], offsets[i + 1:i + 8])
            if not entries:
                continue
            got, acc = skips_per_entry(acc, entries)
            want = []
            for e in entries:
                want_acc = sorted(want_acc + list(e.skips))
                want_acc = [s for s in want_acc if s[0] >= e.resume]
                want.append(tuple(want_acc))
            assert got == want, seed
