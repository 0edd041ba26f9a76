"""Shipped operator content is valid: role configs, dashboards, Prometheus rules."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from telemetry.config import load_config
from telemetry.content import CONTENT_DIRS, content_path


def test_content_dirs_resolve() -> None:
    for name in CONTENT_DIRS:
        assert content_path(name).is_dir()
    with pytest.raises(ValueError):
        content_path("etc")


@pytest.mark.parametrize("role", ["controller", "compute", "storage", "server"])
def test_role_configs_validate(role: str) -> None:
    s = load_config(content_path("collectors") / f"{role}.yaml", env={})
    assert str(s.data_dir) == "/var/lib/telemetry"


def test_units_are_hardened_notify_services() -> None:
    for unit in ("telemetry-agent.service", "telemetry-server.service"):
        text = (content_path("collectors") / unit).read_text()
        for directive in ("Type=notify", "WatchdogSec=", "User=telemetry", "ProtectSystem=strict",
                          "StateDirectory=telemetry", "NoNewPrivileges=yes"):
            assert directive in text, f"{unit} lacks {directive}"


def test_prometheus_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run scripts/setup.sh test (Debian package prometheus)"
    for f in content_path("dashboards").glob("*.yml"):
        r = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
