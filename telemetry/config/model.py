"""The root of the configuration file."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from telemetry.config.base import Section
from telemetry.config.cluster import ClusterConfig
from telemetry.config.core import ApiConfig, BusConfig, LoggingConfig
from telemetry.config.pipeline import PipelineConfig
from telemetry.config.parse import ParseConfig
from telemetry.config.exporter import ExporterConfig
from telemetry.config.rules import ActionsConfig, RulesConfig
from telemetry.config.sinks import SinksConfig
from telemetry.config.sources import SourcesConfig
from telemetry.config.store import StoreConfig


def default_data_dir() -> Path:
    """A folder under the user's data home, as the all-in-one needs no root.

    System installs set ``data_dir: /var/lib/telemetry`` (the shipped agent and
    server configs and the systemd units do).
    """
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "telemetry"


class Settings(Section):
    """Everything the daemon reads from its YAML file (and TELEMETRY_* variables)."""

    data_dir: Path = Field(default_factory=default_data_dir, description="Where state, spool and stores live")
    host: str = Field(default_factory=socket.gethostname, description="This node's name on every record")
    bus: BusConfig = Field(default_factory=BusConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    sources: SourcesConfig = Field(default_factory=SourcesConfig)
    parse: ParseConfig = Field(default_factory=ParseConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    actions: ActionsConfig = Field(default_factory=ActionsConfig)
    sinks: SinksConfig = Field(default_factory=SinksConfig)
    exporter: ExporterConfig = Field(default_factory=ExporterConfig)
    cluster: ClusterConfig = Field(default_factory=lambda: ClusterConfig(enabled=False))

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return Path(os.path.expandvars(str(v))).expanduser()

    @model_validator(mode="after")
    def _delivery_lease(self) -> Settings:
        if self.cluster.enabled and self.cluster.delivery_lease <= 2 * self.actions.timeout:
            raise ValueError(f"cluster.delivery_lease ({self.cluster.delivery_lease:g}s) must exceed twice "
                             f"actions.timeout ({self.actions.timeout:g}s): a claim must outlive the send it covers")
        return self
