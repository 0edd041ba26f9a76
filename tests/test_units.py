"""The shipped systemd units and sysusers entry (issue 20): an unprivileged user, enough descriptors."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

COLLECTORS = Path(__file__).resolve().parent.parent / "collectors"
UNITS = ["telemetry-agent.service", "telemetry-server.service"]


def _service(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(COLLECTORS / name)
    return parser["Service"]


@pytest.mark.parametrize("unit", UNITS)
def test_units_run_unprivileged_with_room_for_descriptors(unit: str) -> None:
    service = _service(unit)
    assert service["User"] == "telemetry" and service["Group"] == "telemetry"
    assert int(service["LimitNOFILE"]) >= 65536
    assert service["NoNewPrivileges"] == "yes" and service["CapabilityBoundingSet"] == ""


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers is not installed")
def test_sysusers_entry_creates_the_user_the_units_name(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    subprocess.run(["systemd-sysusers", f"--root={tmp_path}", "-"], input=(COLLECTORS / "telemetry.sysusers").read_text(),
                   text=True, check=True, capture_output=True)
    [entry] = [line.split(":") for line in (tmp_path / "etc" / "passwd").read_text().splitlines()
               if line.startswith("telemetry:")]
    assert entry[5] == "/var/lib/telemetry" and entry[6] == "/usr/sbin/nologin"
    assert int(entry[2]) < 1000  # a system user
    assert any(line.startswith("telemetry:") for line in (tmp_path / "etc" / "group").read_text().splitlines())
