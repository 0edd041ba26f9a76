"""What every cloud health check shares: its result, its parameters' base, presence tests.

A check answers one of three ways. ``ok`` with values; ``failed: <reason>``
(the service is there and unwell, or could not be asked), with what values it
could still get; or ``skipped: not present (<why>)`` when the service is not
installed on this node, so a controller template on a node without Ceph
reports that plainly instead of paging about it or printing a traceback.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from telemetry.config.base import Duration, Section

__all__ = ["CheckResult", "HealthCheck", "installed"]

_UNIT_DIRS = ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system", "/run/systemd/system")


@dataclass
class CheckResult:
    status: str
    values: list[tuple[str, float, dict[str, Any]]] = field(default_factory=list)

    @property
    def state(self) -> str:
        """``ok``, ``failed`` or ``skipped``."""
        return self.status.split(":", 1)[0]

    @classmethod
    def ok(cls, values: list[tuple[str, float, dict[str, Any]]] | None = None) -> CheckResult:
        return cls("ok", values or [])

    @classmethod
    def failed(cls, reason: str, values: list[tuple[str, float, dict[str, Any]]] | None = None) -> CheckResult:
        return cls(f"failed: {reason}", values or [])

    @classmethod
    def skipped(cls, why: str) -> CheckResult:
        return cls(f"skipped: not present ({why})")


def installed(*names: str, paths: tuple[str, ...] = ()) -> bool:
    """True if any program, systemd unit or init script of these names exists, or any of ``paths``."""
    for n in names:
        if shutil.which(n) or Path("/etc/init.d", n).exists():
            return True
        if any(Path(d, f"{n}.service").exists() for d in _UNIT_DIRS):
            return True
    return any(Path(p).exists() for p in paths)


class HealthCheck(Section):
    """Base of each check's parameters as written in a role template (``check: <type>`` picks the type)."""

    check: str
    name: str | None = None
    interval: Duration | None = None

    @property
    def label(self) -> str:
        return self.name or self.check

    def run(self, timeout: float) -> CheckResult:
        """Ask the service; runs in a worker thread, every I/O bounded by ``timeout``."""
        raise NotImplementedError
