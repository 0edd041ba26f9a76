"""The ``cluster`` section: several servers sharing rules and actions state (docs/deployment.md)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from telemetry.config.base import Duration, Section, as_written, check_scheme, written_is_enabled

CLUSTER_SCHEMES = ("postgresql", "postgres")


class ClusterConfig(Section):
    """Servers that share one PostgreSQL for alarm definitions, state, history, silences and the outbox.

    Written in the file, it is on: each server registers itself with heartbeats,
    the live servers divide the alarms among themselves (each evaluated by
    exactly one of them) and deliver every notification once. Left out, a
    server keeps that state in SQLite under ``data_dir`` and evaluates everything.
    """

    enabled: bool = Field(False, description="Share rules and actions state with other servers (on when this section is written)")
    url: str | None = Field(None, description="postgresql://user@host/db holding the shared state (required when enabled)")
    member: str | None = Field(
        None,
        description="This server's name among the members: unique and the same across restarts (it names its rules "
        "consumer group on the bus); default: the host name",
    )
    heartbeat: Duration = Field(as_written("2s"), gt=0, description="How often a member renews its registration")
    lease: Duration = Field(
        as_written("10s"),
        gt=0,
        description="A member not heard from for this long is dead and its alarms move to the others "
        "(failover takes about lease + heartbeat)",
    )
    refresh: Duration = Field(
        as_written("1s"), gt=0, le=60, description="How often a server reads definitions and states the others changed"
    )
    delivery_lease: Duration = Field(
        as_written("60s"),
        gt=0,
        description="How long a claimed notification stays with the server sending it; a server that dies "
        "mid-delivery leaves it to another once this passes (must exceed actions.timeout)",
    )

    _written = model_validator(mode="before")(written_is_enabled)

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str | None) -> str | None:
        return None if v is None else check_scheme(v, CLUSTER_SCHEMES, "cluster")

    @model_validator(mode="after")
    def _consistent(self) -> ClusterConfig:
        if self.enabled and not self.url:
            raise ValueError("cluster.url is required when the cluster section is written (postgresql://user@host/db)")
        if self.lease < 3 * self.heartbeat:
            raise ValueError(f"cluster.lease ({self.lease:g}s) must be at least three heartbeats "
                             f"({3 * self.heartbeat:g}s), or one late heartbeat would move every alarm")
        return self
