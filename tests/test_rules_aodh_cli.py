"""The real ``aodh`` CLI (aodhclient, aodh-noauth) and our own CLI against `telemetry run` as a subprocess.

The daemon's own host figures (``hardware.*`` samples every second) breach an
alarm created through the aodh CLI, which must then fire.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from tests.support import aodh, wait_until as wait



def telemetry(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "telemetry", *args, "--url", url], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "COLUMNS": "250"})




def test_aodh_cli_creates_lists_fires_and_deletes(daemon_factory, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "roles.yaml").write_text(yaml.safe_dump({"hosts": ["this-node"], "triggers": [
        {"name": "memory is reported", "expression": "last(/this-node/hardware.memory.total)>0",
         "severity": "information"}]}))
    d = daemon_factory("run", config={"host": "this-node", "sources": {"host_metrics": {"interval": 1}},
                                      "rules": {"paths": [str(rules), "rules/"], "tick": 0.5}}).start()
    try:
        created = aodh(d.url, "alarm", "create", "--name", "mem-total", "--type", "threshold",
                       "-m", "hardware.memory.total", "--threshold", "1", "--comparison-operator", "gt",
                       "--period", "2", "--evaluation-periods", "1", "--alarm-action", "http://127.0.0.1:9/hook",
                       "-f", "json")
        assert created.returncode == 0, created.stderr + created.stdout
        alarm = json.loads(created.stdout)
        aid = alarm["alarm_id"]
        assert alarm["name"] == "mem-total" and alarm["type"] == "threshold"
        # the cpu_util form from the issue goes through the same client path
        cpu = aodh(d.url, "alarm", "create", "--name", "cpu-high", "--type", "threshold", "-m", "cpu_util",
                   "--threshold", "75", "--comparison-operator", "gt", "--period", "30", "--evaluation-periods", "1",
                   "--alarm-action", "http://127.0.0.1:9/cpu", "-f", "json")
        assert cpu.returncode == 0, cpu.stderr
        cpu_id = json.loads(cpu.stdout)["alarm_id"]

        updated = aodh(d.url, "alarm", "update", cpu_id, "--threshold", "80", "--severity", "critical", "-f", "json")
        assert updated.returncode == 0, updated.stderr
        assert json.loads(updated.stdout)["severity"] == "critical"
        assert httpx.get(f"{d.url}/v2/alarms/{cpu_id}").json()["threshold_rule"]["threshold"] == 80

        listed = aodh(d.url, "alarm", "list", "-f", "json")
        assert listed.returncode == 0, listed.stderr
        assert {"mem-total", "cpu-high", "host-cpu-high"} <= {a["name"] for a in json.loads(listed.stdout)}

        # host figures arrive every second: the alarm fires
        wait(lambda: httpx.get(f"{d.url}/v2/alarms/{aid}").json()["state"] == "alarm")
        shown = aodh(d.url, "alarm", "show", aid, "-f", "json")
        assert json.loads(shown.stdout)["state"] == "alarm"
        hist = aodh(d.url, "alarm-history", "show", aid, "-f", "json")
        assert hist.returncode == 0, hist.stderr
        assert "state transition" in {h["type"] for h in json.loads(hist.stdout)}

        # our own CLI shows Ceilometer's columns
        out = telemetry(d.url, "alarm-list")
        assert out.returncode == 0, out.stderr
        for col in ("Alarm ID", "Name", "State", "Enabled", "Continuous", "Alarm condition", "Time constraints"):
            assert col in out.stdout
        assert "cpu_util > 80.0 during 1 x 30s" in out.stdout  # as updated through the aodh CLI
        triggers = telemetry(d.url, "trigger-list")
        assert "memory is reported" in triggers.stdout and "PROBLEM" in triggers.stdout
        assert "Information" in triggers.stdout and "this-node" in triggers.stdout

        # our CLI's create / show / history / delete
        made = telemetry(d.url, "alarm-create", "--name", "nova-errors", "--type", "log", "-q",
                         "level:ERROR AND component:nova", "--threshold", "10", "--period", "300",
                         "--comparison-operator", "ge", "-f", "json")
        assert made.returncode == 0, made.stderr
        log_id = json.loads(made.stdout)["alarm_id"]
        shown = telemetry(d.url, "alarm-show", log_id)
        assert "log.query" in shown.stdout and "level:ERROR AND component:nova" in shown.stdout
        assert "creation" in telemetry(d.url, "alarm-history", log_id).stdout
        assert telemetry(d.url, "alarm-delete", log_id).returncode == 0
        missing = telemetry(d.url, "alarm-show", log_id)
        assert missing.returncode == 1 and "404" in missing.stderr

        deleted = aodh(d.url, "alarm", "delete", aid)
        assert deleted.returncode == 0, deleted.stderr
        assert httpx.get(f"{d.url}/v2/alarms/{aid}").status_code == 404
    finally:
        d.stop()
