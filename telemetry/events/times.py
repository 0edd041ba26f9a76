"""Time bounds as operators write them: ISO 8601, epoch seconds, ``now`` or relative (``-1h``, ``now-15m``)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from telemetry.timeutil import parse_duration, parse_timestamp, utcnow

_RELATIVE = re.compile(r"^\s*(?:now)?\s*([+-])\s*(\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w)?)\s*$", re.IGNORECASE)


def parse_time_bound(text: str, now: datetime | None = None) -> datetime:
    """A UTC datetime; raises ValueError with the accepted forms when ``text`` is none of them.

    A bare duration (``1h``) reads as "that long ago", the way ``--since 1h`` does.
    """
    now = now or utcnow()
    value = text.strip()
    if value.lower() == "now":
        return now
    try:
        m = _RELATIVE.match(value)
        if m:
            delta = timedelta(seconds=parse_duration(m.group(2).replace(" ", "")))
            return now - delta if m.group(1) == "-" else now + delta
        if re.fullmatch(r"\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w)", value):
            return now - timedelta(seconds=parse_duration(value))
        if re.fullmatch(r"\d+(?:\.\d+)?", value):
            return parse_timestamp(float(value))
        return parse_timestamp(value)
    except OverflowError:  # 99999999999999999999 seconds, 1e20h: no datetime holds them
        raise ValueError(f"not a time: {text!r} is out of range (years 1 to 9999)") from None
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (use ISO 8601 such as 2026-03-02T09:14:00Z, epoch seconds, now, or -1h / now-15m)"
        ) from None


def to_micros(ts: datetime) -> int:
    """Integer microseconds since the epoch: exact, sortable and cheap to index."""
    return int(ts.replace(microsecond=0).timestamp()) * 1_000_000 + ts.microsecond


_EPOCH = datetime(1970, 1, 1)
_ONE_US = timedelta(microseconds=1)


def iso_micros(value: Any) -> int:
    """``to_micros(parse_timestamp(value))``, with a short way for the form events carry.

    Every event the parse stage hands over has its time as ``iso_utc`` writes it
    (``2026-03-02T09:14:07.112000Z``); reading that back through an aware datetime and
    ``timestamp()`` was a fifth of building a store row.
    """
    if value.__class__ is str and len(value) == 27 and value[26] == "Z" and value[10] == "T":
        try:
            return (datetime.fromisoformat(value[:26]) - _EPOCH) // _ONE_US
        except ValueError:
            pass
    return to_micros(parse_timestamp(value))


def from_micros(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, timezone.utc).replace(microsecond=us % 1_000_000)


def format_micros(micros: int) -> str:
    """A stored time as the API shows it: ISO 8601 to the microsecond, ending in ``Z``."""
    return from_micros(micros).isoformat(timespec="microseconds").replace("+00:00", "Z")
