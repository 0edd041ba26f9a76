"""OpenStack telemetry daemon: log pipeline, metering store and alerting engine in one program."""

__version__ = "0.1.0"
