"""Rule engine, actions and sinks sections."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from telemetry.config.base import Section


class RulesConfig(Section):
    paths: list[str] = Field(
        default_factory=lambda: ["rules/"],
        description="Files or folders of alarm and trigger definitions; relative paths also look in the shipped rules/",
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
