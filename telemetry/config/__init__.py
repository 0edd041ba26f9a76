"""Configuration: one YAML file, validated by pydantic, overridable by TELEMETRY_* variables."""

from telemetry.config.loader import ConfigError, ConfigProblem, load_config, printable, validate
from telemetry.config.model import Settings, default_data_dir

__all__ = ["ConfigError", "ConfigProblem", "Settings", "default_data_dir", "load_config", "printable", "validate"]
