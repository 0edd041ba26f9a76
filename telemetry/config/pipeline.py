"""The sample pipeline section (transformers in Ceilometer's pipeline.yaml form)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from telemetry.config.base import Section


class PipelineConfig(Section):
    """Transformers applied to samples in the server's meter stage (rate_of_change, ...)."""

    enabled: bool = Field(True, description="Run samples through the pipeline before they are stored")
    file: Path | None = Field(
        None,
        description="A pipeline.yaml in Ceilometer's form; empty means the shipped collectors/pipeline.yaml",
    )
