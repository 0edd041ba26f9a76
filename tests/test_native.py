"""The compiled modules (scripts/native.py): used when they match the source, set aside when they do not,
and the same behaviour as the source they were compiled from."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from telemetry import _native

ROOT = Path(__file__).resolve().parent.parent

#: The test files that drive the compiled modules hardest; they run again as Python (the wheel runs so,
#: and a machine without a compiler): the two must agree, and the source must pass on its own.
AS_PYTHON = ["tests/test_parse_quick.py", "tests/test_fast_decoders.py", "tests/test_multiline.py",
             "tests/test_events_predicate.py", "tests/test_parse_dates.py", "tests/test_models.py",
             "tests/test_rules_engine.py", "tests/test_parse_sorting.py", "tests/test_bus_handover.py"]


def _which_file(module: str, env: dict[str, str], path: Path = ROOT) -> subprocess.CompletedProcess[str]:
    code = f"import warnings; warnings.simplefilter('always'); import {module} as m; print(m.__file__)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=path,
                          env={**os.environ, "PYTHONPATH": str(path), **env})


def test_the_build_is_present_and_used() -> None:
    """make test builds the modules (scripts/setup.sh installs mypyc and the C compiler): a build that
    failed must not pass unnoticed."""
    assert _native.active, _native.why
    out = _which_file("telemetry.parse.parser", {})
    assert out.returncode == 0 and out.stdout.strip().endswith(".so"), out.stderr


def test_telemetry_native_0_runs_the_source() -> None:
    out = _which_file("telemetry.parse.parser", {_native.ENV: "0"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(ROOT / "telemetry" / "parse" / "parser.py")
    assert "compiled modules" not in out.stderr  # a choice, not a problem: no warning


def test_a_build_older_than_its_source_is_set_aside_whole(tmp_path: Path) -> None:
    """One edited module sets aside every compiled one (they call each other directly), with a warning."""
    assert _native.active, _native.why
    copy = tmp_path / "tree"
    shutil.copytree(ROOT / "telemetry", copy / "telemetry", ignore=shutil.ignore_patterns("__pycache__"))
    for lib in _native.libraries():
        shutil.copy2(lib, copy / lib.name)
    fresh = _which_file("telemetry.parse.quick", {}, copy)
    assert fresh.stdout.strip().endswith(".so"), fresh.stderr
    grok = copy / "telemetry" / "parse" / "grok.py"
    grok.write_text(grok.read_text() + "\n# edited\n")
    for module in ("telemetry.parse.quick", "telemetry.parse.grok"):
        stale = _which_file(module, {}, copy)
        assert stale.returncode == 0, stale.stderr
        assert stale.stdout.strip().endswith(".py"), stale.stdout
        assert "telemetry.parse.grok changed" in stale.stderr and "scripts/native.py" in stale.stderr


def test_stale_reasons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stamp = tmp_path / "_native.json"
    monkeypatch.setattr(_native, "STAMP", stamp)
    built = [_native.source_of(m).with_name(_native.source_of(m).stem + ".cpython-311-x86_64-linux-gnu.so")
             for m in _native.MODULES]
    monkeypatch.setattr(_native, "_extensions", lambda: built)
    assert "missing" in (_native._stale_reason() or "")
    stamp.write_text("{not json")
    assert "missing or unreadable" in (_native._stale_reason() or "")
    hashes = _native.source_hashes()
    stamp.write_text(json.dumps({"python": "cpython-399", "modules": hashes}))
    assert "another Python" in (_native._stale_reason() or "")
    stamp.write_text(json.dumps({"python": sys.implementation.cache_tag, "modules": hashes}))
    assert _native._stale_reason() is None
    stamp.write_text(json.dumps({"python": sys.implementation.cache_tag,
                                 "modules": {**hashes, "telemetry.recent": "0" * 64}}))
    assert _native._stale_reason() == "the source of telemetry.recent changed since"
    # A module compiled by a build of a longer list runs as it was compiled unless the build is set aside.
    monkeypatch.setattr(_native, "_extensions", lambda: [*built, _native.PACKAGE_DIR / "stage.cpython-311-x86_64-linux-gnu.so"])
    assert _native._stale_reason() == "it was built for another list of modules"
    monkeypatch.setattr(_native, "_extensions", lambda: built[1:])
    assert _native._stale_reason() == "it was built for another list of modules"
    monkeypatch.setattr(_native, "_extensions", lambda: [])
    assert _native._stale_reason() is None  # nothing built: nothing to set aside


def test_every_compiled_module_has_its_source(monkeypatch: pytest.MonkeyPatch) -> None:
    for m in _native.MODULES:
        assert _native.source_of(m).is_file(), m
    monkeypatch.setattr(_native, "_set_aside", frozenset(_native.MODULES))  # as a build set aside leaves it
    spec = _native._SourceFirst.find_spec("telemetry.parse.quick")
    assert spec is not None and spec.origin == str(ROOT / "telemetry" / "parse" / "quick.py")
    assert _native._SourceFirst.find_spec("telemetry.api") is None


@pytest.mark.slow
def test_the_hot_paths_tests_pass_as_python_too() -> None:
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *AS_PYTHON],
                       capture_output=True, text=True, timeout=600, cwd=ROOT, env={**os.environ, _native.ENV: "0"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
