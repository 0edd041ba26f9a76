"""Timestamps of every source format, zones and the configured default zone."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.parse import TIMEOUT_TAG, Parser
from telemetry.parse.dates import fast_zone, parse_log_time, read_log_time, utc_written
from telemetry.models import iso_utc
from telemetry.parse.normalise import normal_level

UTC = timezone.utc


@pytest.mark.parametrize("text,want", [
    ("2026-03-02 09:14:07.112", datetime(2026, 3, 2, 9, 14, 7, 112000, UTC)),
    ("2026-03-02 09:14:07,112", datetime(2026, 3, 2, 9, 14, 7, 112000, UTC)),
    ("2026-03-02T09:14:06.101Z", datetime(2026, 3, 2, 9, 14, 6, 101000, UTC)),
    ("2026-03-02 09:16:39.998+0000", datetime(2026, 3, 2, 9, 16, 39, 998000, UTC)),
    ("2026-03-02 11:00:01.118342+02:00", datetime(2026, 3, 2, 9, 0, 1, 118342, UTC)),
    ("2026-03-02  9:00:00", datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)),
    ("02/Mar/2026:10:14:02 +0100", datetime(2026, 3, 2, 9, 14, 2, tzinfo=UTC)),
    ("02/Mar/2026:09:14:00.104", datetime(2026, 3, 2, 9, 14, 0, 104000, UTC)),
    ("02/Mar/2026/09/50/11", datetime(2026, 3, 2, 9, 50, 11, tzinfo=UTC)),
    ("7-Apr-2015::20:51:42", datetime(2015, 4, 7, 20, 51, 42, tzinfo=UTC)),
    ("160302  9:00:00", datetime(2016, 3, 2, 9, 0, 0, tzinfo=UTC)),
])
def test_formats(text: str, want: datetime) -> None:
    assert parse_log_time(text) == want


def test_syslog_year_and_default_zone() -> None:
    jan = datetime(2026, 1, 3, tzinfo=UTC)
    assert parse_log_time("Dec 31 23:59:59", now=jan) == datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert parse_log_time("Jan  2 10:00:00", now=jan) == datetime(2026, 1, 2, 10, 0, 0, tzinfo=UTC)
    paris = ZoneInfo("Europe/Paris")
    assert parse_log_time("2026-07-01 12:00:00", paris) == datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
    assert parse_log_time("2026-07-01 12:00:00+00:00", paris) == datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert parse_log_time("yesterday") is None
    # the right shape, no such instant: no time read (the line is tagged), never an exception
    assert parse_log_time("2026-13-02 09:14:21.330") is None and parse_log_time("31/Feb/2026:10:14:02") is None


def test_unparseable_timestamp_is_tagged_not_fatal() -> None:
    ev = Parser(patterns=["%{WORD:timestamp} %{GREEDYDATA:rest}"]).parse("never mind")
    assert ev.tags == ["_dateparsefailure"] and ev.to_dict()["timestamp"] == "never"


def test_levels() -> None:
    assert [normal_level(x) for x in ("Note", "warn", "WARN", "ERR", "emer", "AUDIT", "dbg", "CRASH")] == [
        "INFO", "WARNING", "WARNING", "ERROR", "CRITICAL", "INFO", "DEBUG", "ERROR"]
    assert normal_level("TRACE", "openstack") == "ERROR" and normal_level("TRACE") == "DEBUG"


def test_budget_off_the_main_thread_uses_the_regex_timeout() -> None:
    pattern = "^" + ",".join(f"%{{DATA:f{i}}}" for i in range(12)) + ";END"
    parser = Parser(patterns=[pattern], timeout=0.1)
    # ";END" in the line, before the fields: the literal pre-filter (telemetry.parse.literals) lets
    # the engine run, and the engine backtracks through every split of the sixty numbers.
    line = ";END" + ",".join(str(i) for i in range(60))
    out: list = []
    t = threading.Thread(target=lambda: out.append(parser.parse(line)))
    t.start()
    t.join(10)
    assert not t.is_alive() and out[0].tags == [TIMEOUT_TAG]


@pytest.mark.parametrize("text", [
    "2026-03-02 09:14:21.330", "2026-03-02T09:14:21.330115", "2026-03-02 09:14:21", "2026-03-02 09:14:21,330",
    "2026-13-02 09:14:21.330", "2026-03-02 24:00:00.000", "2026-03-02 09:14:21.33Z", "2026-03-02 09:14:2.3300",
    "2026-02-29 09:14:21.330", "2026-03-02 09:14:21.33+01", "2026-03-02  9:14:21.330",
    "2026-03-02 09:14:21.000", "2026-03-02 09:14:21.330+01", "2026-03-02T09:14:21.3+01:00", "2026-W09-1T09:14:21.330",
    "2026-03-02 09:14:21.000000", "2026-03-02 09:14:60.330", "2026-03-02T091421.330000",
])
@pytest.mark.parametrize("zone", [None, "UTC", "Europe/Oslo", "America/New_York"])  # None: timezone.utc
def test_iso_fast_path_reads_what_the_regex_reads(text: str, zone: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    from zoneinfo import ZoneInfo

    import telemetry.parse.dates as dates

    tz = ZoneInfo(zone) if zone else UTC

    when, written = dates.read_log_time(text, tz)
    if written is not None:  # the ISO form cut from the text is the one iso_utc writes
        assert when is not None and written == iso_utc(when)
    monkeypatch.setattr(dates, "_ISO_FAST_LENGTHS", frozenset())
    assert when == dates.parse_log_time(text, tz)


def test_utc_by_name_is_the_fixed_utc() -> None:
    """The configured default zone "UTC" reads as timezone.utc: nothing converted per line."""
    for name in ("UTC", "Etc/UTC", "Zulu"):
        assert fast_zone(ZoneInfo(name)) is UTC
    oslo = ZoneInfo("Europe/Oslo")
    assert fast_zone(oslo) is oslo and fast_zone(UTC) is UTC
    assert Parser(default_tz=ZoneInfo("Etc/UTC")).default_tz is UTC


@settings(max_examples=500, deadline=None)
@given(st.one_of(
    st.builds(lambda d, sep, frac: f"{d.isoformat(sep)[:19]}.{frac}",
              st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
              st.sampled_from([" ", "T"]), st.from_regex(r"\A[0-9]{3}\Z")),
    st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}[.,][0-9٠-٩]{3}\Z"),
    st.text(max_size=26)))
def test_utc_written_is_read_log_times_text(text: str) -> None:
    """The per-second lane writes what read_log_time writes, or leaves the text to it."""
    written = utc_written(text)
    if written is not None:
        assert read_log_time(text)[1] == written


def test_utc_written_examples() -> None:
    assert utc_written("2026-03-02 09:14:07.112") == "2026-03-02T09:14:07.112000Z"
    assert utc_written("2026-03-02T09:14:07.000") == "2026-03-02T09:14:07Z"
    for text in ("2026-13-02 09:14:07.112", "2026-02-30 09:14:07.112", "2026-03-02 24:00:00.000",
                 "2026-03-02 09:14:07,112", "2026-03-02 09:14:07.1\u0662\u0663", "2026-03-02 09:14:07"):
        assert utc_written(text) is None, text
