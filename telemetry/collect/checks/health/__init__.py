"""The cloud's own moving parts as checks a role template lists (``check: <type>``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from telemetry.collect.checks.health.base import CheckResult, HealthCheck, installed
from telemetry.collect.checks.health.cluster import CephCheck, HaproxyCheck, KeepalivedCheck, PacemakerCheck
from telemetry.collect.checks.health.files import LogGrowthCheck, NtpCheck
from telemetry.collect.checks.health.rabbitmq import RabbitmqCheck
from telemetry.collect.checks.health.services import (
    EndpointsCheck, GaleraCheck, MysqlCheck, PostgresCheck, ProcessesCheck,
)

__all__ = ["AnyHealthCheck", "CheckResult", "HealthCheck", "installed"]

#: One entry of a template's ``checks`` that names a ``check`` type; pydantic picks the model by it.
AnyHealthCheck = Annotated[
    ProcessesCheck | EndpointsCheck | RabbitmqCheck | MysqlCheck | GaleraCheck | PostgresCheck | PacemakerCheck
    | HaproxyCheck | KeepalivedCheck | CephCheck | LogGrowthCheck | NtpCheck,
    Field(discriminator="check"),
]
