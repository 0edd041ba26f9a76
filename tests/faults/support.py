"""Reusable pieces of the fault tests: a steady writer whose every line carries a unique
sequence number, the rotations operators' tools perform, and the exact count afterwards.

A fault test runs the real agent (a subprocess), does something bad to it or to its
files while ``SeqWriter`` appends, and hands what reached the downstream to
``count``: every sequence number written must be there exactly once (records the
downstream deduplicates on their id, so a batch re-sent under the same ids after a
kill is not a duplicate; the same line under two ids is).
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = ["Action", "JournalSeqWriter", "SeqWriter", "Tally", "copytruncate", "count", "finish", "format_table", "kill9",
           "rename_rotate"]

#: How a sequence number appears in every line the writer produces.
SEQ = re.compile(r"seq (\d{7})")

#: Something done to the log between two writes (in the writer's thread, so the
#: writer never races the rotation: copytruncate's own window, where lines written
#: between the copy and the truncation are in neither file, is logrotate's loss, not
#: the agent's, and would make an exact count impossible).
Action = Callable[["SeqWriter"], None]


class SeqWriter(threading.Thread):
    """An oslo.log service writing ``rate`` lines a second until ``stop``.

    Each record is one ``write`` on an ``O_APPEND`` descriptor, as Python's logging
    writes a formatted record; now and then a record is an ERROR with its traceback
    (modern oslo exception prefix), so the joiner is exercised too. ``do(action)`` runs
    an action between two records and returns once it is done; an action may reopen
    the file (``reopen``).
    """

    def __init__(self, path: Path, rate: float = 2000.0, pid: int = 4242, traceback_every: int = 97,
                 start: datetime | None = None) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.rate, self.pid = rate, pid
        self.traceback_every = traceback_every
        self.written = 0  # sequence numbers 0 .. written-1 are in the file(s)
        self.rotations = 0
        self.fd = self._open()
        self.error: BaseException | None = None
        #: Timestamps of the records: a fixed day by default; a store test starts near now (within the ttl).
        self._ts = start or datetime(2026, 3, 2, 9, 0, 0)
        self._todo: queue.Queue[tuple[Action, threading.Event]] = queue.Queue()
        self._stopping = threading.Event()

    def do(self, action: Action, timeout: float = 10.0) -> None:
        """Run ``action`` in the writer's thread, between two records; wait until it ran."""
        done = threading.Event()
        self._todo.put((action, done))
        if not done.wait(timeout):
            raise TimeoutError(f"the writer did not run {action} in {timeout}s ({self.error!r})")

    def stop(self) -> None:
        self._stopping.set()
        self.join(10)

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def reopen(self) -> None:
        """What a service does on SIGHUP after a rename rotation: write to the new file."""
        os.close(self.fd)
        self.fd = self._open()

    def _record(self) -> bytes:
        n = self.written
        self._ts += timedelta(microseconds=500)
        head = f"{self._ts:%Y-%m-%d %H:%M:%S.%f}"[:-3] + f" {self.pid}"
        req = f"req-{n:08x}-0000-4000-8000-000000000000"
        if n % self.traceback_every != self.traceback_every - 1:
            self.written += 1
            return (f"{head} INFO nova.compute.manager [{req} - - - - -] seq {n:07d} "
                    f"Took {n % 97 / 10:.2f} seconds to build instance.\n").encode()
        prefix = f"{head} ERROR nova.compute.manager "
        lines = [
            f"{head} ERROR nova.compute.manager [{req} - - - - -] seq {n:07d} Instance failed to spawn",
            f"{prefix}Traceback (most recent call last): seq {n + 1:07d}",
            f'{prefix}  File "/usr/lib/python3/dist-packages/nova/compute/manager.py", line 2743, in _build seq {n + 2:07d}',
            f"{prefix}    yield resources  # seq {n + 3:07d}",
            f"{prefix}libvirt.libvirtError: seq {n + 4:07d} internal error",
            prefix,
        ]
        self.written += 5
        return ("\n".join(lines) + "\n").encode()

    def run(self) -> None:
        try:
            started = time.monotonic()
            while not self._stopping.is_set():
                while not self._todo.empty():
                    action, done = self._todo.get()
                    action(self)
                    done.set()
                due = int((time.monotonic() - started) * self.rate)
                while self.written < due:
                    os.write(self.fd, self._record())
                time.sleep(0.002)
        except BaseException as exc:  # reported by the test, never swallowed
            self.error = exc
        finally:
            os.close(self.fd)


class JournalSeqWriter(threading.Thread):
    """Entries with sequence numbers appended to a real journal file (``agent_support.journal_append``)
    at about ``rate`` entries a second, in small bursts (one systemd-journal-remote run each)."""

    def __init__(self, folder: Path, rate: float = 2000.0, burst: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.folder, self.rate, self.burst = folder, rate, burst
        self.written = 0
        self.error: BaseException | None = None
        self._stopping = threading.Event()

    def run(self) -> None:
        from agent_support import journal_append

        try:
            started = time.monotonic()
            while not self._stopping.is_set():
                due = int((time.monotonic() - started) * self.rate)
                if due > self.written:
                    journal_append(self.folder, [
                        {"MESSAGE": f"seq {n:07d} Took 1.5 seconds to build instance.", "PRIORITY": "6",
                         "SYSLOG_IDENTIFIER": "nova-compute", "_SYSTEMD_UNIT": "nova-compute.service",
                         "_PID": "31842", "_HOSTNAME": "cn01"} for n in range(self.written, due)])
                    self.written = due
                time.sleep(self.burst)
        except BaseException as exc:  # reported by the test, never swallowed
            self.error = exc

    def stop(self) -> None:
        self._stopping.set()
        self.join(30)


def rename_rotate(keep_writing: float = 0.05) -> Action:
    """logrotate's default: rename to ``<name>.<n>``, the service keeps its old
    descriptor for ``keep_writing`` seconds (until its SIGHUP), then reopens."""

    def act(w: SeqWriter) -> None:
        w.rotations += 1
        os.rename(w.path, w.path.with_name(f"{w.path.name}.{w.rotations}"))
        end = time.monotonic() + keep_writing
        while time.monotonic() < end:
            os.write(w.fd, w._record())
            time.sleep(0.002)
        w.reopen()

    return act


def copytruncate(dest: Callable[[SeqWriter], Path] | None = None) -> Action:
    """logrotate's ``copytruncate``: copy the file, then truncate it in place; the
    service keeps writing to its descriptor (``O_APPEND``: from the new end, 0).
    ``dest`` names the copy (default ``<name>.<n>`` beside the file)."""

    def act(w: SeqWriter) -> None:
        w.rotations += 1
        target = dest(w) if dest else w.path.with_name(f"{w.path.name}.{w.rotations}")
        shutil.copyfile(w.path, target)
        os.truncate(w.path, 0)

    return act


@dataclass
class Tally:
    """What the downstream holds, against what was written."""

    fault: str
    written: int
    shipped: int = 0  # distinct sequence numbers present
    lost: list[int] = field(default_factory=list)
    duplicated: list[int] = field(default_factory=list)  # present under more than one record id
    redelivered: int = 0  # records received again under the same id (deduplicated downstream)
    #: Seconds from the end of the fault until every line written was downstream (None: not measured).
    recovery: float | None = None

    @property
    def exact(self) -> bool:
        return not self.lost and not self.duplicated and self.shipped == self.written


def count(fault: str, written: int, records: Iterable[dict]) -> Tally:
    """Sequence numbers in ``records`` (dicts with ``id`` and ``lines``), deduplicated on the id."""
    seen_ids: set[str] = set()
    per_seq: Counter[int] = Counter()
    redelivered = 0
    for r in records:
        if r["id"] in seen_ids:
            redelivered += 1
            continue
        seen_ids.add(r["id"])
        for line in r["lines"]:
            for s in SEQ.findall(line):
                per_seq[int(s)] += 1
    want = range(written)
    return Tally(
        fault=fault, written=written, shipped=sum(1 for n in want if per_seq[n]),
        lost=[n for n in want if not per_seq[n]],
        duplicated=sorted(n for n, c in per_seq.items() if c > 1 or n >= written),
        redelivered=redelivered,
    )


def finish(agent: Any, fault: str, written: int, read: Callable[[], list[dict]], table: list[Tally],
           timeout: float = 30.0) -> Tally:
    """Wait until every line written is downstream (or ``timeout``), a second more for late repeats;
    stop the agent (SIGTERM, which must succeed); count, add the row to ``table`` and insist it is exact."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and count(fault, written, read()).shipped < written:
        time.sleep(0.25)
    time.sleep(1.0)
    assert agent.stop(signal.SIGTERM) == 0, agent.output()[-3000:]
    tally = count(fault, written, read())
    table.append(tally)
    assert tally.exact, (f"{fault}: {len(tally.lost)} lost (e.g. {tally.lost[:5]}), {len(tally.duplicated)} "
                         f"duplicated (e.g. {tally.duplicated[:5]})\n{agent.output()[-3000:]}")
    return tally


def kill9(agent: Any) -> None:
    """SIGKILL the agent process and wait for it (its log stays for the next start)."""
    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait()
    agent.log.close()


def format_table(rows: Iterable[Tally]) -> str:
    out = [f"{'fault':52} {'written':>8} {'stored':>8} {'lost':>6} {'duplicated':>10} {'redelivered':>11} "
           f"{'recovery s':>10}"]
    for t in rows:
        rec = f"{t.recovery:10.1f}" if t.recovery is not None else f"{'-':>10}"
        out.append(f"{t.fault:52} {t.written:8d} {t.shipped:8d} {len(t.lost):6d} {len(t.duplicated):10d} "
                   f"{t.redelivered:11d} {rec}")
    return "\n".join(out)
