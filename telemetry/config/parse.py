"""The parse stage section."""

from __future__ import annotations

from pydantic import Field, field_validator

from telemetry.config.base import Duration, Section


class ParseConfig(Section):
    """Grok parsing of raw log entries into events (the server's parse stage)."""

    enabled: bool = Field(True, description="Run the parse stage in the server")
    patterns_dirs: list[str] = Field(
        default_factory=list,
        description="Extra folders of pattern files in Logstash's format (NAME regex per line), loaded after "
                    "the built-in parsers/ and overriding its names",
    )
    timeout: Duration = Field(
        0.25, gt=0, description="Time one entry may spend in grok; past it the event is tagged _groktimeout"
    )
    timezone: str = Field("UTC", description="Zone of timestamps printed without one (IANA name, e.g. Europe/Paris)")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name such as UTC or Europe/Paris)") from None
        return v
