"""After grok: one level vocabulary and the fields an operator searches by.

Only the built-in types are normalised beyond ``@timestamp``: their patterns
capture the level as printed (``loglevel``: ``Note``, ``warn``, ``ERR``,
``=INFO REPORT``) and we add ``level`` in one vocabulary, the Python logging
names, so ``level:ERROR`` finds errors from nova, MariaDB and OVS alike.
What a user's own ``--pattern`` captured is never rewritten.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

__all__ = ["LEVELS", "normal_level", "normalise_fields", "service_of_logger", "syslog_severity_level"]

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_LEVEL_MAP = {
    "trace": "DEBUG", "debug": "DEBUG", "dbg": "DEBUG",
    "info": "INFO", "informational": "INFO", "notice": "INFO", "note": "INFO", "audit": "INFO",
    "progress": "INFO",
    "warn": "WARNING", "warning": "WARNING",
    "err": "ERROR", "error": "ERROR", "crash": "ERROR", "supervisor": "ERROR",
    "crit": "CRITICAL", "critical": "CRITICAL", "fatal": "CRITICAL", "severe": "CRITICAL",
    "alert": "CRITICAL", "emerg": "CRITICAL", "emergency": "CRITICAL", "emer": "CRITICAL",
    # Ceph's cluster-log levels
    "inf": "INFO", "wrn": "WARNING", "sec": "WARNING",
}

#: Per-type exceptions: oslo's Kilo-era ``TRACE`` lines are an exception's traceback.
_TYPE_LEVELS = {"openstack": {"trace": "ERROR"}}

#: RFC 5424 severities 0..7.
_SEVERITY = ("CRITICAL", "CRITICAL", "CRITICAL", "ERROR", "WARNING", "INFO", "INFO", "DEBUG")

#: Loggers whose first part names the service that wrote them (oslo_*, eventlet... do not).
SERVICES = frozenset({
    "nova", "neutron", "glance", "keystone", "cinder", "heat", "ceilometer", "swift", "aodh", "placement",
    "octavia", "ironic", "manila", "designate", "barbican", "magnum", "trove", "horizon", "gnocchi", "panko",
})


def normal_level(raw: Any, type_: str = "") -> str | None:
    """``Warning``/``warn``/``WARN`` -> ``WARNING``; unknown text is upper-cased as is."""
    return _normal_level(raw, type_) if isinstance(raw, str) else None


# Memoised (bounded): a log has a handful of level spellings and loggers, asked once per line.
@lru_cache(maxsize=4096)
def _normal_level(raw: str, type_: str) -> str | None:
    if not raw:
        return None
    key = raw.strip().lower()
    special = _TYPE_LEVELS.get(type_)
    if special and key in special:
        return special[key]
    return _LEVEL_MAP.get(key, raw.strip().upper())


def syslog_severity_level(priority: Any) -> str | None:
    """The level of a syslog ``<PRI>``: severity is PRI mod 8."""
    try:
        return _SEVERITY[int(priority) % 8]
    except (TypeError, ValueError):
        return None


def service_of_logger(logger: Any) -> str | None:
    """``nova.compute.manager`` -> ``nova``, for entries read without a component."""
    return _service_of_logger(logger) if isinstance(logger, str) else None


@lru_cache(maxsize=4096)
def _service_of_logger(logger: str) -> str | None:
    head = logger.split(".", 1)[0]
    return head if head in SERVICES else None


#: Component of entries read without one, for types that name their source.
_TYPE_COMPONENT = {"rabbitmq": "rabbitmq", "mariadb": "mariadb", "libvirt": "libvirt", "ovs": "openvswitch",
                   "apache": "apache", "apache-error": "apache", "nginx": "nginx", "ceph": "ceph",
                   "memcached": "memcached", "keepalived": "keepalived", "pacemaker": "pacemaker"}


def normalise_fields(data: dict[str, Any], caps: Mapping[str, Any], type_: str) -> None:
    """``level``, ``component``, ``host`` and ``duration`` of a built-in type's event, from its captures.

    ``data`` is what becomes the event; a component or host it holds already stays.
    """
    level = normal_level(caps.get("loglevel"), type_)
    if level is None and "debug_level" in caps:
        level = _ceph_level(caps["debug_level"])
    if level is None and "priority" in caps:
        level = syslog_severity_level(caps["priority"])
    if level is not None:
        data["level"] = level
    if not data.get("component"):
        component = (service_of_logger(caps.get("logger")) if type_ in ("openstack", "json")
                     else caps.get("program") if "program" in caps else _TYPE_COMPONENT.get(type_))
        if component:
            data["component"] = component
    if not data.get("host") and isinstance(caps.get("logsource"), str):
        data["host"] = caps["logsource"]
    if caps.get("duration_us").__class__ is int and "duration" not in caps:  # Apache's %D
        data["duration"] = caps["duration_us"] / 1e6


def _ceph_level(debug_level: Any) -> str | None:
    """Ceph's per-line debug level: -1 is an error (derr), 0 always printed, above that debug output."""
    if not isinstance(debug_level, int):
        return None
    return "ERROR" if debug_level < 0 else "INFO" if debug_level == 0 else "DEBUG"
