"""Bus, API and logging sections."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from telemetry.config.base import Section, check_scheme

BUS_SCHEMES = ("memory", "amqp", "amqps", "kafka")


class BusConfig(Section):
    """The central bus between agents and servers."""

    url: str = Field("memory://", description="memory:// (all-in-one), amqp://user:pass@host:5672/vhost or kafka://host:9092")
    topic_prefix: str = Field("telemetry.", description="Prefix of every topic, queue or exchange name on the bus")
    format: Literal["json", "msgpack"] = Field("json", description="Wire encoding of records")

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        return check_scheme(v, BUS_SCHEMES, "bus")


class ApiConfig(Section):
    """The HTTP API: Ceilometer v2, Aodh v2, events, /metrics, /healthz."""

    enabled: bool = Field(True, description="Serve the HTTP API")
    host: str = Field("127.0.0.1", description="Address to listen on")
    port: int = Field(8777, ge=0, le=65535, description="TCP port (0 picks a free one)")
    tokens: list[SecretStr] = Field(
        default_factory=list, description="Bearer tokens accepted on mutating endpoints; empty means no auth"
    )


class LoggingConfig(Section):
    """The daemon's own log output (stderr, so systemd's journal keeps it)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Minimum level logged")
    format: Literal["text", "json"] = Field("text", description="Plain text for people, JSON lines for log shippers")
