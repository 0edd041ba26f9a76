"""Shared pieces of the configuration models.

Config models forbid unknown keys: a misspelt key in an operator's YAML must
be an error naming it, not a setting silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer

from telemetry.timeutil import parse_duration

__all__ = ["Duration", "as_written", "HostPort", "Section", "check_scheme", "redact_url", "split_hostport",
           "written_is_enabled"]


class Section(BaseModel):
    """Base of every config section."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


def _duration(value: Any) -> float:
    return parse_duration(value)


#: Seconds, written in YAML as ``30``, ``30s``, ``5m``, ``1h`` or ``7d``.
Duration = Annotated[float, BeforeValidator(_duration), PlainSerializer(lambda v: v, return_type=float)]


def as_written(text: str) -> float:
    """A Duration default as an operator would write it (``"7d"``); the validator makes it seconds.

    Typed as the float it becomes, so the models read as documented (``'7d'``)
    and mypy still sees a float field.
    """
    return text  # type: ignore[return-value]


def redact_url(url: str) -> str:
    """Hide the password of a URL such as ``amqp://user:secret@host/``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


def split_hostport(value: str) -> tuple[str, int]:
    """``"127.0.0.1:5140"`` -> ``("127.0.0.1", 5140)``; ``[::1]:5140`` works too."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _hostport(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected host:port, got {value!r}")
    split_hostport(value)
    return value


def written_is_enabled(data: Any) -> Any:
    """A section written in the file is on unless it says ``enabled: false``."""
    if isinstance(data, dict) and "enabled" not in data:
        return {**data, "enabled": True}
    return data


#: ``host:port`` checked at load time.
HostPort = Annotated[str, BeforeValidator(_hostport)]


def check_scheme(url: str, schemes: tuple[str, ...], what: str) -> str:
    """``url`` unchanged if its scheme is one of ``schemes``; a message naming them otherwise."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in schemes:
        # the password is masked here too: this message is printed, logged and returned by the API
        raise ValueError(f"unsupported {what} URL {redact_url(url)!r}: the scheme must be one of {', '.join(schemes)}")
    return url
