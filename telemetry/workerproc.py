"""A child process of the daemon that does one stage's CPU work on a core of its own.

The daemon is one process under one GIL; the stages whose work is pure CPU
(parsing, the embedded store's writes) can run beside it in child processes.
Both ends are this module: the daemon starts ``python -m <module>`` with pipes
on its stdin and stdout, sends ``(operation, arguments)`` as length-prefixed
messages and waits for ``("ok", value)`` or ``("err", exception)``, in a thread
that holds no GIL while it waits. The exception is raised in the daemon as the
child raised it, so the stage still tells a failure of the data (split the
batch, dead-letter the record) from one of its surroundings (retry).

A message is ``marshal`` when it holds only the plain types (the batches: the
bus's bytes, the events' contract dicts), else pickle (exceptions, datetimes,
named tuples). Both ends are the same interpreter, and marshal reads and writes
those batches three times faster than pickle: with a batch crossing twice per
log line (to the parse worker and back, then to the store's writer), pickle
was a tenth of the daemon's CPU per line. marshal refuses what is not exactly a
plain type (a subclass, an enum), so nothing changes type on the way.

A child that dies (kill -9, out of memory) fails the call in progress with
``WorkerGone``, an OSError: stages give that batch back to the bus and retry
it, and the next call starts a new child. A child exits when the daemon's end
of its pipe closes, so a kill -9 of the daemon leaves none behind.
"""

from __future__ import annotations

import fcntl
import logging
import marshal
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

_LEN = struct.Struct("!I")
#: Bytes a pipe to or from a child holds (Linux's default pipe-max-size): a batch in one read.
_PIPE_SIZE = 1 << 20

__all__ = ["ChildProcess", "WorkerGone", "roomy_pipe", "serve_stdio", "write_all"]


class WorkerGone(OSError):
    """The child process died or cannot be reached; the batch is retried with a new one."""


def _write_frame(fd: int, data: bytes, deadline: float | None = None) -> None:
    """The length, then the message as it is: a batch is megabytes, and joining the two copied it."""
    write_all(fd, _LEN.pack(len(data)), deadline)
    write_all(fd, data, deadline)


def write_all(fd: int, data: bytes | bytearray, deadline: float | None = None) -> None:
    """All of ``data``: a write to a pipe may be partial (a signal, a debugger attaching). With a
    deadline the descriptor is non-blocking and each wait for room is bounded by it.

    Also ``telemetry parse``'s output: CPython's buffered writer loses data when a signal (the
    grok time budget's SIGALRM tick) interrupts a write that a pipe takes only in part.
    """
    view = memoryview(data)
    while view:
        if deadline is not None:
            _wait(fd, select.POLLOUT, deadline)
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            pass


def _read_exactly(fd: int, n: int, deadline: float | None = None) -> bytearray:
    """``n`` bytes, or EOFError when the other end closed first; with a deadline, as ``write_all``.

    Read in place into one buffer of the message's size (chunks joined, then copied to bytes, were
    two more copies of every batch).
    """
    buf = bytearray(n)
    with memoryview(buf) as view:
        got = 0
        while got < n:
            if deadline is not None:
                _wait(fd, select.POLLIN, deadline)
            try:
                k = os.readv(fd, [view[got:got + (1 << 20)]])
            except BlockingIOError:
                continue
            if not k:
                raise EOFError
            got += k
    return buf


def _wait(fd: int, event: int, deadline: float) -> None:
    left = deadline - time.monotonic()
    poller = select.poll()
    poller.register(fd, event)
    if left <= 0 or not poller.poll(left * 1000):
        raise TimeoutError("no answer in time")


def _dumps(obj: Any) -> bytes:
    try:
        return b"M" + marshal.dumps(obj)
    except ValueError:  # not only plain types (or nested too deep for marshal)
        return b"P" + pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _loads(data: bytes | bytearray) -> Any:
    body = memoryview(data)[1:]
    if data[:1] == b"M":
        try:
            return marshal.loads(body)
        except (EOFError, TypeError) as exc:  # what pickle would raise of a broken message
            raise ValueError(f"a broken message: {exc}") from None
    return pickle.loads(body)


def roomy_pipe(fd: int) -> None:
    """A pipe that holds a whole batch: one read instead of sixteen, each winning the GIL back (and for
    ``telemetry parse``'s output, one wake-up of the reader a read's events); anything else is left as it is."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    except (OSError, AttributeError):  # above the system's pipe-max-size, or not Linux: the default
        pass


def _send(fd: int, obj: Any) -> None:
    _write_frame(fd, _dumps(obj))


def _receive(fd: int, deadline: float | None = None) -> bytearray:
    """One framed message's bytes (still encoded)."""
    (n,) = _LEN.unpack(_read_exactly(fd, _LEN.size, deadline))
    return _read_exactly(fd, n, deadline)


def _exchange(proc: subprocess.Popen[bytes], data: bytes, timeout: float) -> bytearray:
    """Send an encoded request and read the encoded reply within ``timeout`` seconds, or raise TimeoutError.

    Non-blocking on the pipes' descriptors: a child that stops answering (stopped, wedged) must fail
    the call, never hang the stage.
    """
    assert proc.stdin is not None and proc.stdout is not None
    wfd, rfd = proc.stdin.fileno(), proc.stdout.fileno()
    os.set_blocking(wfd, False)
    os.set_blocking(rfd, False)
    deadline = time.monotonic() + timeout
    _write_frame(wfd, data, deadline)
    return _receive(rfd, deadline)


class ChildProcess:
    """``python -m module *args``, started now and again after it died; ``call`` blocks (use a thread)."""

    def __init__(self, what: str, module: str, args: list[str], timeout: float = 120.0) -> None:
        self.what, self.module, self.args = what, module, args
        #: Seconds a call may take before the child is taken for lost (killed, and the batch retried).
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._start()  # now: it imports while the daemon starts, not on the first batch

    def _start(self) -> subprocess.Popen[bytes]:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            if proc is not None:
                log.warning("%s: the child process exited (%s); starting a new one", self.what, proc.returncode)
            proc = self.proc = subprocess.Popen([sys.executable, "-m", self.module, *self.args],
                                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
            for stream in (proc.stdin, proc.stdout):
                assert stream is not None
                roomy_pipe(stream.fileno())
        return proc

    def call(self, op: str, *args: Any, timeout: float | None = None) -> Any:
        """``op(*args)`` in the child; ``timeout`` (default: the child's) bounds the wait for its answer."""
        # Encoding either way happens outside the lock: a second caller prepares its batch while
        # the child works on the first.
        request = _dumps((op, args))
        with self._lock:
            proc = self._start()
            timeout = timeout or self.timeout
            try:
                reply = _exchange(proc, request, timeout)
            except (EOFError, OSError, ValueError) as exc:  # ValueError: a closed pipe
                if isinstance(exc, TimeoutError):
                    log.warning("%s: no answer within %.0fs; killing the child process", self.what, timeout)
                    proc.kill()
                self._stop()
                raise WorkerGone(f"{self.what}: the child process is gone ({type(exc).__name__})") from None
        try:
            status, value = _loads(reply)
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            with self._lock:
                self._stop()
            raise WorkerGone(f"{self.what}: an unreadable answer ({type(exc).__name__})") from None
        if status == "err":
            raise value
        return value

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        try:
            proc.wait(5)  # it exits once its input closes, after the call in progress
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        with self._lock:
            self._stop()


def serve_stdio(ops: Mapping[str, Callable[..., Any]], name: str, on_exit: Callable[[], None] | None = None) -> None:
    """The child's side: answer calls on stdin/stdout until the daemon's end closes, then exit."""
    logging.basicConfig(level=logging.WARNING, format=f"{name}: %(levelname)s %(message)s")
    inp, out = sys.stdin.fileno(), os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # nothing but replies may reach the daemon's end
    sys.stdout = sys.stderr
    while True:
        try:
            op, args = _loads(_receive(inp))
        except EOFError:
            break
        try:
            reply: tuple[str, Any] = ("ok", ops[op](*args))
        except Exception as exc:  # the daemon decides: retry (environmental) or split the batch (data)
            reply = ("err", exc)
        try:
            _send(out, reply)
        except (TypeError, pickle.PicklingError, AttributeError):  # an exception that does not pickle
            _send(out, ("err", RuntimeError(f"{type(reply[1]).__name__}: {reply[1]}")))
        except BrokenPipeError:
            break
    if on_exit is not None:
        on_exit()
    os._exit(0)
