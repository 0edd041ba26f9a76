"""Rule engine, actions and sinks sections."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from telemetry.config.base import Duration, Section


class RulesConfig(Section):
    paths: list[str] = Field(
        default_factory=lambda: ["rules/"],
        description="Files or folders of alarm and trigger definitions; relative paths also look in the shipped rules/",
    )
    enabled: bool = Field(True, description="Run the rule engine (alarms and triggers) in server and all-in-one modes")
    tick: Duration = Field(1.0, gt=0, le=60, description="Seconds between time-based evaluations (nodata, insufficient data)")
    history_ttl: Duration = Field("30d", gt=0, description="How long alarm history (transitions, changes) is kept")
    hosts: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Roles per host (e.g. cn01: [compute]); each role's template in rules/templates applies to the host",
    )


class ActionsConfig(Section):
    """Notifier settings; filled in by the actions stage."""

    model_config = {"extra": "allow"}


class SinksConfig(Section):
    """Log sinks such as elasticsearch and loki; filled in by the sinks stage."""

    model_config = {"extra": "allow"}

    # Sinks are optional integrations; their own models validate them when enabled.
    elasticsearch: dict[str, Any] | None = Field(None, description="Elasticsearch bulk sink settings")
    loki: dict[str, Any] | None = Field(None, description="Grafana Loki push sink settings")
