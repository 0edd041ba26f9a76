"""The embedded event store with its writes in a child process (``store.events.writer: process``).

Why a process: the daemon is one process under one GIL, and the store's
writes are its largest single cost. In a thread they also stall: the sqlite3
module lets go of the GIL for each row it steps and must win it back from the
parsing thread after every one, up to a switch interval (5 ms) each time, so
a batch of 2,000 rows could take seconds while the parser kept the GIL. The
child writes with a core and a GIL of its own; the daemon hands it each batch
in one pickled message and waits for the answer in a thread that holds no GIL
meanwhile. Searches and histograms still read the day files from the daemon
(WAL readers never wait for the writer), and the retention loop still runs
there: it asks the child to close a day's writer before unlinking its file.

Delivery is unchanged: ``insert`` returns once the child committed (the
stage acks after that). A child that dies (kill -9, out of memory) fails the
call in progress with ``WriterGone``, an OSError, so the stage gives the batch
back to the bus and retries it; the next call starts a new child, and the
store's idempotence on ``id`` drops whatever the dead one had already
committed. The child exits when the daemon's end of its pipe closes, so a
kill -9 of the daemon leaves no writer behind.

The wire is length-prefixed pickle over the child's stdin and stdout; both
ends are this package, started by the daemon itself.
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
from datetime import date
from pathlib import Path
from collections.abc import Callable
from typing import IO, Any

from telemetry.events.rows import Row
from telemetry.events.store import EventStore, Written

log = logging.getLogger(__name__)

_LEN = struct.Struct("!I")


class WriterGone(OSError):
    """The writer process died or cannot be reached; the batch is retried with a new one."""


def _send(out: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_LEN.pack(len(data)) + data)
    out.flush()


def _receive(inp: IO[bytes]) -> Any:
    head = inp.read(_LEN.size)
    if len(head) < _LEN.size:
        raise EOFError
    (n,) = _LEN.unpack(head)
    data = inp.read(n)
    if len(data) < n:
        raise EOFError
    return pickle.loads(data)


class ProcessEventStore(EventStore):
    """An EventStore whose ``write`` and ``close_writer`` run in a child process; reads stay here."""

    def __init__(self, root: Path, ttl: float, min_free_disk: float = 0.05, **kwargs: Any) -> None:
        super().__init__(root, ttl, min_free_disk, **kwargs)
        self._proc: subprocess.Popen[bytes] | None = None
        self._call_lock = threading.Lock()
        self._child()  # now: it imports while the daemon starts, not on the first batch

    def describe(self) -> str:
        return f"{self.root} (writes in a child process)"

    def _child(self) -> subprocess.Popen[bytes]:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            if proc is not None:
                log.warning("event store: the writer process exited (%s); starting a new one", proc.returncode)
            proc = self._proc = subprocess.Popen(
                [sys.executable, "-m", "telemetry.events.writer", str(self.root), repr(self.ttl)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
            )
        return proc

    def _call(self, op: str, *args: Any) -> Any:
        with self._call_lock:
            proc = self._child()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                _send(proc.stdin, (op, args))
                status, value = _receive(proc.stdout)
            except (EOFError, OSError, ValueError, pickle.UnpicklingError) as exc:  # ValueError: a closed pipe
                self._stop_child()
                raise WriterGone(f"the event store's writer process is gone ({type(exc).__name__})") from None
        if status == "err":
            raise value
        return value

    def write_kept(self, rows: list[Row], floor: int) -> Written:
        return Written(*self._call("write_kept", rows, floor))

    def close_writer(self, day: date) -> None:
        if self._proc is not None:  # no child yet: no writer open
            self._call("close_writer", day)

    def _stop_child(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        try:
            proc.wait(5)  # it exits once its input closes, after a commit in progress
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        with self._call_lock:
            self._stop_child()
        super().close()


def serve(store: EventStore, inp: IO[bytes], out: IO[bytes]) -> None:
    """Answer calls until the daemon's end closes; an exception goes back to be raised there."""
    ops: dict[str, Callable[..., Any]] = {"write_kept": store.write_kept, "close_writer": store.close_writer}
    while True:
        try:
            op, args = _receive(inp)
        except EOFError:
            return
        try:
            reply: tuple[str, Any] = ("ok", ops[op](*args))
        except Exception as exc:  # the daemon decides: retry (environmental) or split the batch (data)
            reply = ("err", exc)
        try:
            _send(out, reply)
        except (TypeError, pickle.PicklingError, AttributeError):  # an exception that does not pickle
            _send(out, ("err", RuntimeError(f"{type(reply[1]).__name__}: {reply[1]}")))
        except BrokenPipeError:
            return


def main() -> None:
    root, ttl = Path(sys.argv[1]), float(sys.argv[2])  # the ttl's floor comes with each write
    logging.basicConfig(level=logging.WARNING, format="telemetry events writer: %(levelname)s %(message)s")
    store = EventStore(root, ttl)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but replies may reach the daemon's end of the pipe
    try:
        serve(store, inp, out)
    finally:
        store.close()
        os._exit(0)


if __name__ == "__main__":
    main()
