"""The hot modules compiled to C with mypyc, and the guard that never lets a stale build run.

Why: the log path's per-line work is Python bytecode the interpreter walks (the agent's joiner, the
parser, the store's rows, the rules' tests), and the same typed source compiled by mypyc runs it in
a fraction of the time (docs/native.md). The source stays the truth: without a
build, or with one older than the source, the modules run as Python, as before.

``scripts/native.py`` compiles ``MODULES`` in place (an extension beside each ``.py``, one shared
library beside the package) and writes ``STAMP``: each module's source hash. An extension module is
imported before the ``.py`` beside it, so an edited source would otherwise keep running its old
compiled code. At the package's import this checks every hash; if one differs (or a build left no
stamp) the whole build is set aside, since compiled modules call each other directly, not through
the import system, and one stale part would still be reached from the others.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

#: The modules compiled, in the package: each is on a log line's path and plain, typed Python: no
#: coroutines (a compiled coroutine cancelled mid-wait kept the exception it handled as the context
#: of later ones, and a stage's loop under test stopped delivering), no pydantic models, no classes
#: that code outside subclasses, none that mypyc cannot compile (an exception class, a ``continue``
#: inside ``finally``). Defined here once: the build reads it.
MODULES = (
    "telemetry.collect.multiline",
    "telemetry.collect.tail",
    "telemetry.collect.reader",
    "telemetry.parse.quick",
    "telemetry.parse.parser",
    "telemetry.parse.grok",
    "telemetry.parse.dates",
    "telemetry.parse.normalise",
    "telemetry.parse.literals",
    "telemetry.fastcodec",
    "telemetry.events.rows",
    "telemetry.events.times",
    "telemetry.events.documents",
    "telemetry.events.predicate",
    "telemetry.rules.evaluator",
    "telemetry.recent",
    "telemetry.exporter.tally",
    "telemetry.bus.packing",
    "telemetry.bus.messages",
    "telemetry.bus.handover",
    "telemetry.parse.sorting",
    "telemetry.parse.worker",
)
#: The shared library mypyc puts the modules' code in (a top-level module beside the package).
GROUP = "telemetry_native"
PACKAGE_DIR = Path(__file__).resolve().parent
STAMP = PACKAGE_DIR / "_native.json"
#: ``0`` runs the modules as Python even with a build present (to compare, or to rule the build out).
ENV = "TELEMETRY_NATIVE"


def source_of(module: str) -> Path:
    return PACKAGE_DIR.parent.joinpath(*module.split(".")).with_suffix(".py")


def source_hashes(modules: Sequence[str] = MODULES) -> dict[str, str]:
    return {m: hashlib.sha256(source_of(m).read_bytes()).hexdigest() for m in modules}


def _extensions() -> list[Path]:
    """Every compiled module in the package: those of ``MODULES``, and any a build of another list left."""
    endings = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    found = []
    for folder, _, files in os.walk(PACKAGE_DIR):  # one walk: this runs at every start of every command
        found += [Path(folder, f) for f in files if f.endswith(endings)]
    return sorted(found)


def libraries() -> list[Path]:
    """The shared library (or libraries, one per Python) the compiled modules' code is in."""
    return sorted(PACKAGE_DIR.parent.glob(f"{GROUP}__mypyc*"))


def _module_of(extension: Path) -> str:
    relative = extension.relative_to(PACKAGE_DIR.parent)
    return ".".join((*relative.parent.parts, relative.name.split(".", 1)[0]))


def _stale_reason(found: list[Path] | None = None) -> str | None:
    """Why the build present (``found``: ``_extensions()``) cannot be used, or None when it matches the
    source (or there is none)."""
    if found is None:
        found = _extensions()
    if not found:
        return None
    try:
        stamp: Any = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return f"{STAMP.name} is missing or unreadable"
    if not isinstance(stamp, dict) or stamp.get("python") != sys.implementation.cache_tag:
        return "it was built for another Python"
    built = {_module_of(p) for p in found}
    if built != set(MODULES) or set(stamp.get("modules", ())) != set(MODULES):
        return "it was built for another list of modules"
    changed = [m for m, h in source_hashes().items() if stamp["modules"][m] != h]
    return f"the source of {', '.join(changed)} changed since" if changed else None


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Finds the compiled modules' ``.py`` files, never their extensions (a stale build is set aside)."""

    @classmethod
    def find_spec(cls, fullname: str, path: Any = None, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _set_aside:
            return None
        src = source_of(fullname)
        return importlib.util.spec_from_file_location(fullname, src)


#: The modules loaded from their source when the build is set aside: every one that has an extension.
_set_aside: frozenset[str] = frozenset()
#: Whether the compiled modules run (False: no build, or a stale one set aside); ``why`` says why not.
active = False
why = "not built (scripts/native.py)"


def _set_build_aside(found: list[Path]) -> None:
    global _set_aside
    _set_aside = frozenset({*MODULES, *map(_module_of, found)})
    sys.meta_path.insert(0, _SourceFirst())


def guard() -> None:
    global active, why
    found = _extensions()
    if not found:
        return
    if os.environ.get(ENV, "1") == "0":  # the operator's (or a comparison's) choice
        _set_build_aside(found)
        why = f"set aside: {ENV}=0"
        return
    reason = _stale_reason(found)
    if reason is not None:
        _set_build_aside(found)
        why = f"set aside: {reason}; run scripts/native.py (make setup) to build again"
        warnings.warn(f"telemetry's compiled modules are {why}", RuntimeWarning, stacklevel=3)
        return
    active, why = True, "compiled"
