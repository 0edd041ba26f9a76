"""The daemon's children: a batch of plain values crosses as marshal, anything else as pickle, unchanged."""

from __future__ import annotations

import asyncio
import enum
import os
import pickle
import signal
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import pytest

from telemetry.workerproc import ChildProcess, WorkerGone, _dumps, _loads


class Colour(enum.StrEnum):
    RED = "red"


class Pair(NamedTuple):
    a: int
    b: dict[str, int]


def test_a_batch_of_plain_values_crosses_as_marshal() -> None:
    batch = ("parse", ([b"{}", ("id", "host", 1, ["line"], 1733356800123456, [], None)],))
    events = [{"id": "x", "pid": 3, "tags": ["a"], "message": "m", "fields": {"f": 1.5, "n": None, "t": True}}, ("openstack",)]
    for value in (batch, events):
        data = _dumps(value)
        assert data[:1] == b"M"
        assert _loads(data) == value


@pytest.mark.parametrize("value", [
    Pair(1, {"x": 2}),  # a named tuple (the store's Written)
    [Colour.RED],  # a str subclass: marshal would give it back as a plain str
    ("err", ValueError("bad row")),
    {"read_at": datetime(2026, 12, 4, tzinfo=timezone.utc)},
], ids=["namedtuple", "str-enum", "exception", "datetime"])
def test_anything_else_crosses_as_pickle_and_keeps_its_type(value: object) -> None:
    data = _dumps(value)
    assert data[:1] == b"P"
    back = _loads(data)
    assert type(back) is type(value)
    if isinstance(value, tuple) and isinstance(value[1], Exception):
        assert isinstance(back[1], ValueError) and str(back[1]) == "bad row"
    else:
        assert back == value
        if isinstance(value, list):
            assert type(back[0]) is Colour


def test_a_broken_message_is_a_value_error() -> None:
    data = _dumps([{"a": "b" * 100}])
    with pytest.raises(ValueError):
        _loads(data[:20])


@pytest.fixture
def child(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    proc = ChildProcess("test child", "workerproc_child", [], timeout=20)
    yield proc
    proc.close()


def _in_threads(child: ChildProcess, tickets: list[int], wait: float) -> list[object]:
    """``stamp(wait)`` with each ticket, each from a thread of its own, started in the reverse order."""
    results: list[object] = [None] * len(tickets)

    def run(i: int) -> None:
        try:
            results[i] = child.call("stamp", wait, ticket=tickets[i])
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(tickets))]
    for t in reversed(threads):
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join(30)
    return results


def test_calls_are_pipelined_and_answered_in_ticket_order(child: ChildProcess) -> None:
    """The second request is in the child's pipe before it answers the first (so it never idles between
    them), and each call gets its own answer in the order of the tickets, whatever order the threads ran in."""
    tickets = [child.ticket() for _ in range(3)]
    results = _in_threads(child, tickets, 0.3)
    assert [r[0] for r in results] == [1, 2, 3]  # type: ignore[index]
    assert [r[1] for r in results] == [True, True, False]  # type: ignore[index]


def test_a_child_lost_with_calls_queued_fails_each_and_the_next_call_starts_a_new_one(child: ChildProcess) -> None:
    first_pid = child.call("stamp", 0)[2]
    tickets = [child.ticket() for _ in range(2)]
    killer = threading.Timer(0.4, lambda: os.kill(first_pid, signal.SIGKILL))
    killer.start()
    results = _in_threads(child, tickets, 1.0)
    assert all(isinstance(r, WorkerGone) for r in results), results
    count, _, pid = child.call("stamp", 0)
    assert pid != first_pid and count == 1


def test_closing_waits_for_the_calls_already_made(child: ChildProcess) -> None:
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(child.call("stamp", 0.5)))
    t.start()
    time.sleep(0.1)
    child.close()
    t.join(10)
    assert out and out[0][0] == 1  # type: ignore[index]
    assert not child.running


def test_a_ticket_whose_call_fails_before_it_is_made_holds_back_no_later_call(child: ChildProcess) -> None:
    """A request that cannot be encoded, or a caller failing while it prepares one (``in_order``), still
    passes its turns: every call after it would otherwise wait for ever."""
    first, second = child.ticket(), child.ticket()
    with pytest.raises((pickle.PicklingError, AttributeError)):
        child.call("stamp", lambda: None, ticket=first)  # a lambda pickles nowhere
    assert _in_threads(child, [second], 0)[0][0] == 1  # type: ignore[index]  # (a thread: a hang fails, not stalls)

    def broken(ticket: int) -> object:
        raise RuntimeError("the batch could not be prepared")

    async def ordered() -> list[object]:
        failing = child.in_order(broken)
        after = child.in_order(lambda ticket: child.call("stamp", 0, ticket=ticket))
        return list(await asyncio.wait_for(asyncio.gather(failing, after, return_exceptions=True), 10))

    results: list[object] = []
    t = threading.Thread(target=lambda: results.extend(asyncio.run(ordered())), daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "a call after the failed one waited for ever"
    assert isinstance(results[0], RuntimeError) and results[1][0] == 2  # type: ignore[index]
