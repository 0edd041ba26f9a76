"""What /metrics shows besides the daemon's own health: meters, alarm states, log-derived counters."""

from __future__ import annotations

from pydantic import Field, field_validator

from telemetry.config.base import Duration, Section, as_written


class MeterGauges(Section):
    """The latest value of each meter on /metrics, bounded so a large cloud cannot blow up a scrape."""

    enabled: bool = Field(True, description="Export meters on /metrics (server and all-in-one)")
    meters: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Meter name globs to export; a leading ! excludes (e.g. ['hardware.*', '!disk.*'])",
    )
    max_series: int = Field(
        10_000,
        ge=1,
        description="Series kept at most; samples of new series beyond it are refused and counted",
    )
    stale_after: Duration = Field(
        as_written("30m"),
        gt=0,
        description="A series with no sample for this long leaves /metrics (a deleted instance, a gone host)",
    )

    @field_validator("meters")
    @classmethod
    def _globs(cls, v: list[str]) -> list[str]:
        for g in v:
            if not g.lstrip("!"):
                raise ValueError(f"empty meter glob {g!r}")
        return v


class ExporterConfig(Section):
    """Prometheus exposition of meters, alarm and trigger states, and counters derived from parsed logs."""

    meters: MeterGauges = Field(default_factory=MeterGauges)
    alarm_states: bool = Field(True, description="Export telemetry_alarm_state for every alarm and trigger")
    log_counters: bool = Field(
        True,
        description="Count parsed log lines by component and level, and API requests by method and status",
    )
