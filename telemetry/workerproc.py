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

import contextlib
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
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

_LEN = struct.Struct("!I")
#: Bytes a pipe to or from a child holds (Linux's default pipe-max-size): a batch in one read.
_PIPE_SIZE = 1 << 20

#: How a child starts: its module's ``main()``, imported, not run with ``-m`` (runpy needs a code object,
#: which a compiled module has not: telemetry._native). Its name stays on the command line, its own
#: arguments in ``sys.argv[1:]`` as with ``-m``.
_LAUNCH = "import sys, importlib; importlib.import_module(sys.argv.pop(1)).main()"

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


class ChildProcess:
    """``python -m module *args``, started now and again after it died; ``call`` blocks (use a thread).

    Calls from several threads are pipelined: each has a ticket, requests go to the child in ticket
    order as soon as the one before is written, and replies are read in the same order. A second
    batch then waits in the pipe while the child works on the first, and the child starts on it the
    moment it answers, instead of idling while the daemon takes the answer in, hands it on and
    prepares the next (``BusStage.handle_depth``).

    At most one thread writes to the child (the holder of the writing turn) and one reads from it
    (the reading turn), so each closes only its own end of a lost child's pipes: a descriptor closed
    under another thread's wait could be reused by any file the daemon opens next.
    """

    def __init__(self, what: str, module: str, args: list[str], timeout: float = 120.0) -> None:
        self.what, self.module, self.args = what, module, args
        #: Seconds a call may take before the child is taken for lost (killed, and the batch retried).
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # self.proc and self._lost
        self._lost: list[subprocess.Popen[bytes]] = []  # killed children whose input the next writer closes
        self._turns = threading.Condition()
        self._issued = self._writing = self._reading = 0  # tickets given; whose request, whose reply is next
        self._start()  # now: it imports while the daemon starts, not on the first batch

    def _start(self, ticket: int | None = None) -> subprocess.Popen[bytes]:
        """The running child, started if there is none (in ``ticket``'s writing turn, or before any call)."""
        no_reader = ticket is None or self._reading == ticket  # every reply before it read: nobody reads
        with self._lock:
            for old in self._lost:  # killed and reaped already (``_give_up``)
                _close(old.stdin)
            self._lost.clear()
            proc = self.proc
            if proc is not None and proc.poll() is None:
                return proc
            if proc is not None:
                log.warning("%s: the child process exited (%s); starting a new one", self.what, proc.returncode)
                _close(proc.stdin)
                if no_reader:  # else the reader that finds it gone closes its output
                    _close(proc.stdout)
                proc.wait()
            proc = self.proc = subprocess.Popen([sys.executable, "-c", _LAUNCH, self.module, *self.args],
                                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
            for stream in (proc.stdin, proc.stdout):
                assert stream is not None
                roomy_pipe(stream.fileno())
                os.set_blocking(stream.fileno(), False)  # every wait is bounded (``write_all``, ``_read_exactly``)
            return proc

    def _give_up(self, proc: subprocess.Popen[bytes]) -> None:
        """Kill a child taken for lost; the next call starts a new one."""
        with self._lock:
            if self.proc is proc:
                self.proc = None
                self._lost.append(proc)
        proc.kill()
        proc.wait()  # reaped now: a SIGKILL ends even a stopped process at once

    def ticket(self) -> int:
        """A place in the order of calls. Take it where that order is decided (the event loop, for
        batches that must stay in order) and pass it to ``call``, which must then be made: the calls
        after it wait for its turn. ``call`` takes one itself when given none."""
        with self._turns:
            self._issued += 1
            return self._issued - 1

    def in_order(self, call: Callable[[int], T]) -> Awaitable[T]:
        """``call(ticket)`` in a thread, its place in the child's order taken now: the event loop's order
        of these calls is the order the child answers them in. Shielded, so a task cancelled meanwhile
        does not cancel the call: a ticket taken must be used, or the calls after it wait for ever (and
        one that ``call`` fails before using, preparing its request, is passed on here)."""
        import asyncio  # here: ``telemetry parse`` imports this module and has no event loop (17 ms at its start)

        def run(ticket: int) -> T:
            try:
                return call(ticket)
            finally:
                self._pass_unused(ticket)

        ticket = self.ticket()
        return asyncio.shield(asyncio.get_running_loop().run_in_executor(None, run, ticket))

    def _pass_unused(self, ticket: int) -> None:
        """Let the calls after ``ticket`` go on when it was never used for a call."""
        with self._turns:
            if self._writing > ticket:  # its writing turn came and went: ``call`` used it
                return
        for counter in ("_writing", "_reading"):
            self._wait_turn(counter, ticket)
            self._end_turn(counter)

    def _wait_turn(self, counter: str, ticket: int) -> None:
        with self._turns:
            self._turns.wait_for(lambda: getattr(self, counter) == ticket)

    def _end_turn(self, counter: str) -> None:
        with self._turns:
            setattr(self, counter, getattr(self, counter) + 1)
            self._turns.notify_all()

    def call(self, op: str, *args: Any, timeout: float | None = None, ticket: int | None = None) -> Any:
        """``op(*args)`` in the child; ``timeout`` (default: the child's) bounds each wait: for room to
        send the request (the child finishing the call before), then for the answer.

        Whatever happens, the call passes both its turns (else every later call would wait for ever):
        a failure of the child or of starting one is ``WorkerGone``; an error of the child's operation
        is raised as the child raised it.
        """
        # Encoding either way happens outside the turns: a second caller prepares its batch while
        # the child works on the first.
        try:
            request = _dumps((op, args))
        except BaseException:
            if ticket is not None:
                self._pass_unused(ticket)
            raise
        timeout = timeout or self.timeout
        if ticket is None:
            ticket = self.ticket()
        self._wait_turn("_writing", ticket)
        proc: subprocess.Popen[bytes] | None = None
        try:
            proc = self._start(ticket)
            failed = self._send(proc, request, timeout)
        except BaseException as exc:  # the child could not be started (no memory, no such interpreter)
            failed = exc
        finally:
            self._end_turn("_writing")
        self._wait_turn("_reading", ticket)
        try:
            reply: bytearray | BaseException
            if failed is None:
                assert proc is not None  # started, and the request went out
                reply = self._reply(proc, timeout)
            else:
                reply = failed
            if isinstance(reply, BaseException) and proc is not None:
                self._give_up(proc)
                _close(proc.stdout)
        finally:
            self._end_turn("_reading")
        if isinstance(reply, BaseException):
            if not isinstance(reply, (OSError, EOFError, ValueError)):
                raise reply
            raise WorkerGone(f"{self.what}: the child process is gone ({type(reply).__name__})") from None
        try:
            status, value = _loads(reply)
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            assert proc is not None  # a reply came from it
            self._give_up(proc)  # its next reply could not be trusted either
            raise WorkerGone(f"{self.what}: an unreadable answer ({type(exc).__name__})") from None
        if status == "err":
            raise value
        return value

    def _send(self, proc: subprocess.Popen[bytes], request: bytes, timeout: float) -> BaseException | None:
        """Write the request; the error instead of raising it, for the caller to fail in its reading turn
        (the replies before it are still read, in order)."""
        assert proc.stdin is not None
        try:
            _write_frame(proc.stdin.fileno(), request, time.monotonic() + timeout)
        except (OSError, ValueError) as exc:  # ValueError: a pipe closed meanwhile
            if isinstance(exc, TimeoutError):
                log.warning("%s: no room for a request within %.0fs; killing the child process", self.what, timeout)
                proc.kill()  # the reader of the call before it, if any, finds it gone
            return exc
        return None

    def _reply(self, proc: subprocess.Popen[bytes], timeout: float) -> bytearray | BaseException:
        """The reply to the oldest request, or the error that lost the child (an earlier call may have)."""
        if proc is not self.proc or proc.stdout is None or proc.stdout.closed:
            return EOFError("an earlier call lost the child")
        try:
            return _receive(proc.stdout.fileno(), time.monotonic() + timeout)
        except (EOFError, OSError, ValueError) as exc:
            if isinstance(exc, TimeoutError):
                log.warning("%s: no answer within %.0fs; killing the child process", self.what, timeout)
            return exc

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        """End the child once the calls already made are answered (it exits when its input closes)."""
        ticket = self.ticket()
        self._wait_turn("_writing", ticket)  # held: no request goes out meanwhile
        try:
            self._wait_turn("_reading", ticket)
            try:
                with self._lock:
                    procs, self._lost = [*self._lost, *([self.proc] if self.proc is not None else [])], []
                    self.proc = None
                for proc in procs:
                    _close(proc.stdin)
                    _close(proc.stdout)
                    try:
                        proc.wait(5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            finally:
                self._end_turn("_reading")
        finally:
            self._end_turn("_writing")


def _close(stream: Any) -> None:
    """Close one end of a child's pipe; a failing close (the child gone) leaves nothing to do."""
    if stream is not None:
        with contextlib.suppress(OSError):
            stream.close()


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
