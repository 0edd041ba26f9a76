"""The daemon's children: a batch of plain values crosses as marshal, anything else as pickle, unchanged."""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import NamedTuple

import pytest

from telemetry.workerproc import _dumps, _loads


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
