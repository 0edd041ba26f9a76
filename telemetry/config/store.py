"""Metering and event store sections."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from telemetry.config.base import Duration, Section, as_written, check_scheme

STORE_SCHEMES = ("sqlite", "postgresql", "postgres")


class StoreUrl(Section):
    url: str = Field("sqlite://", description="sqlite:// (embedded, under data_dir) or postgresql://user@host/db")

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        return check_scheme(v, STORE_SCHEMES, "store")


class EventStoreConfig(StoreUrl):
    writer: Literal["process", "thread"] = Field(
        "process", description="Where the embedded (sqlite://) store writes: a child process of its own, which "
        "uses a second core and never waits on the parser for the GIL, or a thread of the daemon (one process, "
        "for machines with a single core). PostgreSQL writes are the database's work either way",
    )
    default_operator: Literal["AND", "OR"] = Field(
        "AND", description="Operator between juxtaposed query terms (level:ERROR nova): AND, or OR as in Kibana's Lucene syntax",
    )


class TtlConfig(Section):
    """How long data is kept; expiry drops whole day partitions."""

    default: Duration = Field(as_written("7d"), gt=0, description="Time to live of samples and events")
    meters: dict[str, Duration] = Field(
        default_factory=dict, description="Per meter-name pattern (fnmatch), e.g. {'cpu*': 30d}"
    )
    events: Duration | None = Field(None, gt=0, description="Time to live of events (default: ttl.default)")


class RollupConfig(Section):
    """Per-minute and per-hour aggregates, kept longer than raw samples so statistics over weeks stay cheap."""

    minute: Duration = Field(as_written("30d"), gt=0, description="Time to live of the per-minute roll-ups")
    hour: Duration = Field(as_written("400d"), gt=0, description="Time to live of the per-hour roll-ups")


class DeadLetterConfig(Section):
    """Records a stage refused, kept for reading and replay (``telemetry dead-letter-list``)."""

    ttl: Duration = Field(as_written("7d"), gt=0, description="How long a dead letter is kept")


class StoreConfig(Section):
    samples: StoreUrl = Field(default_factory=StoreUrl)
    events: EventStoreConfig = Field(default_factory=EventStoreConfig)
    ttl: TtlConfig = Field(default_factory=TtlConfig)
    rollups: RollupConfig = Field(default_factory=RollupConfig)
    dead_letters: DeadLetterConfig = Field(default_factory=DeadLetterConfig)
    retention_interval: Duration = Field(as_written("60s"), gt=0, description="How often expiry and the free-space guard run")
    min_free_disk: float = Field(
        0.05, ge=0, lt=1, description="Free-space floor (fraction of the data disk) below which old partitions are shed"
    )
