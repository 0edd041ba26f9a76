"""Log sinks: Elasticsearch and Grafana Loki (docs/outputs.md).

Each sink is a section of its own under ``sinks``; writing it enables it
(unless it says ``enabled: false``), leaving it out runs no sink.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from telemetry.config.base import Duration, Section, as_written, check_scheme

HTTP_SCHEMES = ("http", "https")
#: Event fields small and bounded enough to be Loki stream labels.
LOKI_LABEL_FIELDS = ("host", "component", "level", "type")
LokiLabelField = Literal["host", "component", "level", "type"]


def _default_loki_labels() -> list[LokiLabelField]:
    return ["host", "component", "level"]


class SinkSection(Section):
    """What every sink shares: batching and how long it keeps retrying before it holds the stage back."""

    enabled: bool = Field(True, description="Run this sink (a section written in the file is enabled)")
    batch_size: int = Field(500, ge=1, le=10_000, description="Events taken from the bus and sent per batch")
    max_retries: int = Field(
        5,
        ge=0,
        description="Retries of the events a receiver could not take now (429, 5xx, unreachable) within "
        "one batch; then the batch goes back to the bus and is tried again later, never dropped",
    )
    backoff_initial: Duration = Field(
        as_written("0.5s"), gt=0, description="First retry delay; doubles each retry, with jitter"
    )
    backoff_max: Duration = Field(as_written("30s"), gt=0, description="Longest delay between two retries")
    timeout: Duration = Field(as_written("30s"), gt=0, description="Timeout of one request to the receiver")
    ca_file: str | None = Field(None, description="CA bundle that signed the receiver's certificate (https)")
    verify: bool = Field(True, description="Verify the receiver's TLS certificate and host name")


class ElasticsearchSink(SinkSection):
    """Events into Elasticsearch: an index per day, ECS field names, legacy names as aliases."""

    urls: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:9200"], min_length=1, description="Cluster nodes"
    )
    index_prefix: str = Field(
        "telemetry-events",
        pattern=r"^[a-z0-9][a-z0-9._-]*$",
        description="Events go to PREFIX-YYYY.MM.DD (the event's UTC day); the template covers PREFIX-*",
    )
    retention: Duration | None = Field(
        as_written("30d"),
        gt=0,
        description="ILM policy: delete a day's index this long after that day; null: keep forever",
    )
    manage_templates: bool = Field(
        True,
        description="Install the index template and ILM policy (off when the cluster's owner manages them)",
    )
    shards: int = Field(1, ge=1, description="Primary shards per daily index")
    replicas: int = Field(1, ge=0, description="Replicas per daily index")
    username: str | None = Field(None, description="Basic auth user")
    password: SecretStr | None = Field(None, description="Basic auth password")
    api_key: SecretStr | None = Field(
        None, description="API key (base64 id:key), instead of user and password"
    )
    max_chunk_bytes: int = Field(
        10 * 1024 * 1024,
        ge=1024,
        description="Largest _bulk request body; bigger batches are sent in several",
    )

    @field_validator("urls")
    @classmethod
    def _schemes(cls, urls: list[str]) -> list[str]:
        return [check_scheme(u, HTTP_SCHEMES, "elasticsearch") for u in urls]

    @model_validator(mode="after")
    def _one_auth(self) -> ElasticsearchSink:
        if self.api_key is not None and self.username is not None:
            raise ValueError("give either api_key or username/password, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


class LokiSink(SinkSection):
    """Events into Grafana Loki's push API: a few labels per stream, the rest in the line."""

    url: str = Field("http://127.0.0.1:3100", description="Loki base URL; events go to URL/loki/api/v1/push")
    encoding: Literal["protobuf", "json"] = Field(
        "protobuf", description="protobuf (snappy-compressed, what Promtail sends) or json"
    )
    labels: list[LokiLabelField] = Field(
        default_factory=_default_loki_labels,
        description="Event fields that become stream labels; keep them few: every combination is a stream",
    )
    static_labels: dict[str, str] = Field(
        default_factory=lambda: {"job": "telemetry"}, description="Labels added to every stream"
    )
    tenant_id: str | None = Field(None, description="X-Scope-OrgID of a multi-tenant Loki")
    username: str | None = Field(None, description="Basic auth user (e.g. Grafana Cloud)")
    password: SecretStr | None = Field(None, description="Basic auth password")
    max_line_bytes: int = Field(
        256 * 1024,
        ge=1024,
        description="Longer lines are cut here (Loki's default max_line_size), never refused",
    )

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        return check_scheme(v, HTTP_SCHEMES, "loki").rstrip("/")

    @field_validator("static_labels")
    @classmethod
    def _label_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name) or name.startswith("__"):
                raise ValueError(f"{name!r} is not a valid Loki label name")
            if name in LOKI_LABEL_FIELDS:
                raise ValueError(f"{name!r} is an event field: list it under labels instead")
        return v

    @model_validator(mode="after")
    def _labels_present(self) -> LokiSink:
        if not self.labels and not self.static_labels:
            raise ValueError("Loki needs at least one label: give labels or static_labels")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


class SinksConfig(Section):
    """Where events go besides the event store; each written section runs one sink on the server."""

    elasticsearch: ElasticsearchSink | None = Field(None, description="Elasticsearch bulk sink")
    loki: LokiSink | None = Field(None, description="Grafana Loki push sink")
