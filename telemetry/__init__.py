"""OpenStack telemetry daemon: log pipeline, metering store and alerting engine in one program."""

from telemetry import _native

__version__ = "0.1.0"

_native.guard()  # before any compiled module is imported: a stale build must not run
