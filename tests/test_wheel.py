"""A plain, non-editable install of the wheel finds its shipped content."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from telemetry import _native

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_installs_and_finds_content(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    [wheel] = dist.glob("openstack_telemetry-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, timeout=300)
    # Dependencies come from the test environment; the telemetry package itself must come from the wheel.
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = (
        "import telemetry, telemetry.content as c, telemetry.ui as ui, json;"
        "print(json.dumps({'pkg': telemetry.__file__, 'native': telemetry._native.why, "
        "'dirs': {n: [p.name for p in c.content_path(n).iterdir()] for n in c.CONTENT_DIRS}, "
        "'where': str(c.content_path('parsers')), 'ui': sorted(ui.asset_names()), 'ui_dir': str(ui.STATIC)}))"
    )
    out = subprocess.run([str(py), "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path)
    import json

    info = json.loads(out.stdout)
    assert info["pkg"].startswith(site), info
    # A checkout with a current build of the compiled modules makes a wheel that carries and runs them
    # (hatch_build.py); one without makes a pure-Python wheel, which runs the source.
    assert info["native"] == ("compiled" if _native.active else "not built (scripts/native.py)"), info
    assert wheel.name.endswith("-py3-none-any.whl") != _native.active, wheel.name
    assert info["where"].startswith(site), info
    for name, files in info["dirs"].items():
        assert files, f"{name}/ shipped empty"
    # The web console works offline from the wheel: its pages and the vendored uPlot are inside it.
    assert info["ui_dir"].startswith(site), info
    assert {"index.html", "core.js", "logs.js", "trace.js", "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css"} \
        <= set(info["ui"]), info["ui"]
    r = subprocess.run([str(venv / "bin" / "telemetry"), "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "telemetry" in r.stdout
