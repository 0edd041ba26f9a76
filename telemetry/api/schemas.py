"""Response schemas of the routes that build their JSON by hand.

The Ceilometer routes and the event search return ``JSONResponse`` built from
plain dicts (the hot paths skip pydantic's serialisation), so FastAPI cannot
infer what they return. These models declare it (``responses=`` on each
route) so /docs and /openapi.json describe every operation, without
validating what is sent.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ComponentHealth(_Open):
    state: str = Field(description="starting, running, failed or stopped")
    error: str | None = None
    restarts: int | None = None


class Health(BaseModel):
    status: str = Field(description="ok, or degraded when a component failed (HTTP 503)")
    version: str
    mode: str
    host: str
    uptime_seconds: float
    bus: str
    components: dict[str, ComponentHealth]


class Meter(BaseModel):
    meter_id: str
    name: str
    type: str
    unit: str
    resource_id: str
    project_id: str | None
    user_id: str | None
    source: str


class OldSample(BaseModel):
    counter_name: str
    counter_type: str
    counter_unit: str
    counter_volume: float
    resource_id: str
    project_id: str | None
    user_id: str | None
    source: str
    timestamp: str
    recorded_at: str
    resource_metadata: dict[str, Any]
    message_id: str


class NewSample(BaseModel):
    id: str
    meter: str
    type: str
    unit: str
    volume: float
    user_id: str | None
    project_id: str | None
    resource_id: str
    source: str
    timestamp: str
    recorded_at: str
    metadata: dict[str, Any]


class Link(BaseModel):
    href: str
    rel: str


class Resource(BaseModel):
    resource_id: str
    project_id: str | None
    user_id: str | None
    source: str
    first_sample_timestamp: str
    last_sample_timestamp: str
    metadata: dict[str, Any]
    links: list[Link]


class Event(_Open):
    """A stored event: the contract's fields, plus the grok captures and notification fields it had."""

    id: str
    timestamp: str = Field(alias="@timestamp")
    host: str | None = None
    component: str | None = None
    type: str | None = None
    level: str | None = None
    message: str | None = None
    request_id: str | None = None
    tags: list[str] = Field(default_factory=list)


class Bucket(BaseModel):
    start: str
    count: int


class Histogram(BaseModel):
    interval: float
    start: str | None
    end: str | None
    total: int
    buckets: list[Bucket]


class Trace(BaseModel):
    """Every event naming one request or resource, oldest first, with the services and hosts it crossed."""

    kind: str = Field(description="request, instance or volume")
    id: str
    services: list[str] = Field(description="Components in the order the trace first reached them")
    hosts: list[str]
    truncated: bool = Field(description="True when more events matched than the limit returned")
    events: list[Event]


class StageRates(BaseModel):
    records_in: float
    records_out: float
    rejected: float
    dead_lettered: float


class PipelineSnapshot(BaseModel):
    """Cumulative counters at ``time``: a client takes two snapshots and divides the difference by the time between."""

    time: float = Field(description="Server clock, epoch seconds")
    stages: dict[str, StageRates]
    topics: dict[str, dict[str, float]] = Field(description="Per bus topic: published, consumed, redelivered")
    spool: dict[str, float] = Field(description="The agent's disk spool: bytes, batches")
    bus: dict[str, float] = Field(description="Queue depth (AMQP) and consumer lag (Kafka), summed per topic")
    components: dict[str, ComponentHealth]


def json_body(model: Any, code: int = 200, description: str = "Successful Response") -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route returning ``model`` (a model or ``list[model]``) as JSON."""
    return {code: {"model": model, "description": description}}
