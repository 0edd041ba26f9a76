"""Timestamps as the sources print them, to aware UTC datetimes.

Every format in the sample logs: ISO 8601 with a space or a T, a dot or a
comma before the fraction, any zone form (``Z``, ``+0000``, ``+00:00``);
MariaDB's unpadded hour; Apache's ``02/Mar/2026:09:14:02 +0000``; HAProxy's
``02/Mar/2026:09:14:00.104``; Swift's ``02/Mar/2026/09/50/11``; nginx's ``2026/03/02 09:14:02``; Apache's
error log ``Mon Mar 02 09:14:02.123456 2026``; RabbitMQ's
old ``7-Apr-2015::20:51:42``; syslog's yearless ``Mar  2 09:50:11``; MySQL's
``160302  9:00:00``. A time without a zone is taken in ``default_tz`` (UTC
unless configured), because that is what OpenStack services log.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo

__all__ = ["fast_zone", "parse_log_time", "read_log_time", "utc_written"]

_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}

_ISO = re.compile(
    r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})[T ]+(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?\s*"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?$"
)
#: Lengths of ``YYYY-MM-DD HH:MM:SS`` with no fraction, milliseconds or microseconds.
_ISO_FAST_LENGTHS = frozenset({19, 23, 26})
# 02/Mar/2026:09:14:02 +0000, 02/Mar/2026:09:14:00.104, 02/Mar/2026/09/50/11, 7-Apr-2015::20:51:42
_DMY = re.compile(
    r"^(\d{1,2})[/-]([A-Za-z]{3})[A-Za-z]*[/-](\d{4})(?:::|[:/ ])(\d{1,2})[:/](\d{2})[:/](\d{2})(?:[.,](\d+))?"
    r"(?:\s*(Z|[+-]\d{2}:?\d{2}))?$"
)
# Mar  2 09:50:11 (syslog, no year)
_SYSLOG = re.compile(r"^([A-Za-z]{3}) +(\d{1,2}) (\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?$")
# Mon Mar 02 09:14:02.123456 2026 (Apache's error log, ctime)
_CTIME = re.compile(r"^[A-Za-z]{3} ([A-Za-z]{3}) +(\d{1,2}) (\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))? (\d{4})$")
# 160302  9:00:00 (old MySQL)
_YYMMDD = re.compile(r"^(\d{2})(\d{2})(\d{2}) +(\d{1,2}):(\d{2}):(\d{2})$")


def _zone(text: str | None, default_tz: tzinfo) -> tzinfo:
    if not text:
        return default_tz
    if text == "Z":
        return timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    minutes = int(digits[:2]) * 60 + (int(digits[2:4]) if len(digits) >= 4 else 0)
    return timezone(sign * timedelta(minutes=minutes))


#: IANA names of UTC itself (not of zones that merely sit at +00:00 part of the year).
_UTC_KEYS = frozenset({"UTC", "Etc/UTC", "UCT", "Etc/UCT", "Universal", "Etc/Universal", "Zulu", "Etc/Zulu",
                       "GMT", "Etc/GMT", "GMT0", "GMT+0", "GMT-0", "Etc/GMT0", "Etc/GMT+0", "Etc/GMT-0",
                       "Greenwich", "Etc/Greenwich"})


def fast_zone(tz: tzinfo) -> tzinfo:
    """``timezone.utc`` for a ZoneInfo of UTC (the configured default): the same instants, and
    ``_aware`` then converts nothing, where going through ZoneInfo cost each line a microsecond."""
    return timezone.utc if getattr(tz, "key", None) in _UTC_KEYS else tz


def _micro(frac: str | None) -> int:
    return int((frac or "0")[:6].ljust(6, "0"))


def _aware(dt: datetime, tz: tzinfo) -> datetime:
    """Attach the zone (fixed offset or zoneinfo, DST included) and convert to UTC."""
    if tz is timezone.utc:  # the usual case: nothing to convert
        return dt.replace(tzinfo=tz)
    return dt.replace(tzinfo=tz).astimezone(timezone.utc)


def parse_log_time(text: str, default_tz: tzinfo = timezone.utc, now: datetime | None = None) -> datetime | None:
    """The instant a log timestamp names, in UTC; None when the text is no known format."""
    return read_log_time(text, default_tz, now)[0]


def read_log_time(text: str, default_tz: tzinfo = timezone.utc, now: datetime | None = None
                  ) -> tuple[datetime | None, str | None]:
    """``parse_log_time``, and the instant as ``iso_utc`` writes it when the text gave it at once.

    The usual OpenStack line (``2026-03-02 09:14:21.330``, no zone, UTC by default) is read by
    the C parser with the zone appended, and its ISO form cut from the text: attaching the zone
    afterwards (``replace``) and formatting the result again cost the line two microseconds.
    """
    text = text.strip()
    if (len(text) in _ISO_FAST_LENGTHS and text[10] in "T " and text[4] == "-" and text[7] == "-"
            and text[13] == ":" and text[16] == ":"):
        # The shape of nearly every OpenStack line (2026-03-02 09:14:21.330, no zone), read
        # by the C parser; anything it reads differently from _ISO (a week date, 2026-W09-1)
        # is left to _ISO below.
        if default_tz is timezone.utc:
            try:
                dt = datetime.fromisoformat(text + "Z")
            except ValueError:
                dt = None
            if dt is not None:
                micro = dt.microsecond
                return dt, f"{text[:10]}T{text[11:19]}.{micro:06d}Z" if micro else f"{text[:10]}T{text[11:19]}Z"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            dt = None
        if dt is not None and dt.tzinfo is None:
            return _aware(dt, default_tz), None
    try:
        return _read_other(text, default_tz, now), None
    except (ValueError, OverflowError):  # the right shape, no such instant (month 13, hour 24)
        return None, None


def utc_written(text: str) -> str | None:
    """``read_log_time(text)[1]`` for UTC and the usual shape (``2026-03-02 09:14:21.330``); None otherwise.

    For an event built without its datetime (``telemetry.parse.quick``): the C parser only checks
    the instant exists, and the text is cut from the line, in half of ``read_log_time``'s time.
    """
    if (len(text) != 23 or text[19] != "." or text[4] != "-" or text[7] != "-" or text[10] not in "T "
            or text[13] != ":" or text[16] != ":"):
        return None
    frac = text[20:]
    if not (frac.isascii() and frac.isdigit()):
        return None
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return None
    return f"{text[:10]}T{text[11:19]}Z" if frac == "000" else f"{text[:10]}T{text[11:19]}.{frac}000Z"


def _read_other(text: str, default_tz: tzinfo, now: datetime | None) -> datetime | None:
    m = _ISO.match(text)
    if m:
        y, mo, d, h, mi, s, frac, zone = m.groups()
        dt = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s or 0), _micro(frac))
        return _aware(dt, _zone(zone, default_tz))
    m = _DMY.match(text)
    if m:
        d, mon, y, h, mi, s, frac, zone = m.groups()
        month = _MONTHS.get(mon.lower())
        if month is None:
            return None
        dt = datetime(int(y), month, int(d), int(h), int(mi), int(s), _micro(frac))
        return _aware(dt, _zone(zone, default_tz))
    m = _SYSLOG.match(text)
    if m:
        mon, d, h, mi, s, frac = m.groups()
        month = _MONTHS.get(mon.lower())
        if month is None:
            return None
        now = now or datetime.now(timezone.utc)
        dt = _aware(datetime(now.year, month, int(d), int(h), int(mi), int(s), _micro(frac)), default_tz)
        # No year in the line: a date more than a day ahead is from last year (a log read in January).
        if dt - now > timedelta(days=1):
            dt = _aware(datetime(now.year - 1, month, int(d), int(h), int(mi), int(s), _micro(frac)), default_tz)
        return dt
    m = _CTIME.match(text)
    if m:
        mon, d, h, mi, s, frac, y = m.groups()
        month = _MONTHS.get(mon.lower())
        if month is None:
            return None
        return _aware(datetime(int(y), month, int(d), int(h), int(mi), int(s), _micro(frac)), default_tz)
    m = _YYMMDD.match(text)
    if m:
        y, mo, d, h, mi, s = (int(x) for x in m.groups())
        return _aware(datetime(2000 + y, mo, d, h, mi, s), default_tz)
    return None
