#!/usr/bin/env python3
"""Compile the hot modules (``telemetry._native.MODULES``) with mypyc, in place; or remove the build.

    scripts/native.py          build, unless the build present matches the source
    scripts/native.py --force  build whatever is present
    scripts/native.py --clean  remove the build: the modules run as Python

``make setup``, ``make run`` and ``make test`` run it (scripts/setup.sh). It needs mypy (the ``native``
extra) and a C compiler; without them it says so and the package runs as Python. The stamp is written
last, from the sources read before the build: a source edited during the build leaves the stamp
stale, and the package then sets the build aside (``telemetry._native.guard``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import warnings  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # a stale build is what this is run to replace
    from telemetry import _native  # noqa: E402


def clean() -> None:
    for p in _native._extensions() + _native.libraries():
        p.unlink()
    _native.STAMP.unlink(missing_ok=True)


def up_to_date() -> bool:
    found = _native._extensions()
    return bool(found) and _native._stale_reason(found) is None


def build() -> None:
    try:
        from mypyc.build import mypycify
        from setuptools import Distribution
    except ImportError as exc:
        raise SystemExit(f"scripts/native.py: cannot compile ({exc.name} is missing: pip install -e '.[native]'); "
                         "the package runs as Python") from None
    hashes = _native.source_hashes()
    clean()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="telemetry-native-") as tmp:
        cwd = os.getcwd()
        os.chdir(ROOT)  # mypycify names the modules by their paths from here
        try:
            paths = [str(_native.source_of(m).relative_to(ROOT)) for m in _native.MODULES]
            exts = mypycify(paths, opt_level="3", group_name=_native.GROUP, target_dir=str(Path(tmp) / "c"))
            dist = Distribution({"name": "telemetry-native", "ext_modules": exts})
            cmd = dist.get_command_obj("build_ext")
            cmd.inplace = True
            cmd.build_temp = str(Path(tmp) / "o")
            cmd.parallel = os.cpu_count() or 1
            dist.run_command("build_ext")
        finally:
            os.chdir(cwd)
    _native.STAMP.write_text(json.dumps({"python": sys.implementation.cache_tag, "modules": hashes}, indent=1) + "\n")
    print(f"scripts/native.py: compiled {len(_native.MODULES)} modules in {time.monotonic() - started:.0f} s",
          file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--clean", action="store_true")
    args = ap.parse_args()
    if args.clean:
        clean()
        return
    if not args.force and up_to_date():
        return
    if shutil.which(os.environ.get("CC", "cc")) is None:
        raise SystemExit("scripts/native.py: no C compiler (cc); the package runs as Python")
    build()


if __name__ == "__main__":
    main()
