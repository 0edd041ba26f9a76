"""The web console served at ``/ui``: static files only, shipped in the wheel.

The pages are plain HTML, CSS and JavaScript that read the daemon's JSON APIs
from the browser (docs/console.md says why no build step); uPlot, the one
library, is vendored under ``static/vendor`` by scripts/vendor-ui.sh.
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"


def asset_names() -> frozenset[str]:
    """Every file the console may serve, relative to ``STATIC``: nothing outside this list is ever read."""
    return frozenset(p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file())
