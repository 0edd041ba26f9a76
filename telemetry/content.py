"""Where the operator content (collectors/, parsers/, rules/, dashboards/) lives.

In a wheel it ships as ``telemetry/_content/<name>``; in a source checkout it
sits at the top of the repository. Code asks here instead of guessing.
"""

from __future__ import annotations

from pathlib import Path

CONTENT_DIRS = ("collectors", "parsers", "rules", "dashboards")
_PKG = Path(__file__).resolve().parent


def content_path(name: str) -> Path:
    """The folder of shipped content ``name`` (one of CONTENT_DIRS)."""
    if name not in CONTENT_DIRS:
        raise ValueError(f"unknown content folder {name!r}; expected one of {', '.join(CONTENT_DIRS)}")
    installed = _PKG / "_content" / name
    if installed.is_dir():
        return installed
    return _PKG.parent / name
