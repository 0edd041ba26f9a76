"""The journal input on real journal files (written by Debian's systemd-journal-remote), read with
Debian's journalctl: field mapping, tracebacks sent as one entry, and the cursor across a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from agent_support import InProcessAgent, journal_append

from telemetry.bus import MemoryBus
from telemetry.collect.journald import component_of
from telemetry.config import Settings
from telemetry.metrics import REGISTRY

TRACEBACK = "\n".join([
    "Instance failed to spawn: libvirt.libvirtError: internal error: process exited while connecting to monitor",
    "Traceback (most recent call last):",
    '  File "/usr/lib/python3/dist-packages/nova/compute/manager.py", line 2743, in _build_resources',
    "    yield resources",
    "libvirt.libvirtError: internal error: process exited while connecting to monitor",
])


def entry(message: str, unit: str = "nova-compute.service", ident: str = "nova-compute", priority: int = 6,
          pid: int = 31842, host: str = "cn01") -> dict[str, str]:
    return {"MESSAGE": message, "PRIORITY": str(priority), "SYSLOG_IDENTIFIER": ident, "_SYSTEMD_UNIT": unit,
            "_PID": str(pid), "_HOSTNAME": host}


def journald_settings(tmp: Path, **journald: object) -> Settings:
    return Settings.model_validate({
        "data_dir": str(tmp / "data"), "host": "node1",
        "sources": {"files": [], "host_metrics": {"enabled": False},
                    "journald": {"directory": str(tmp / "journal"), **journald},
                    "agent": {"batch_wait": 0.05}},
    })


def test_components_from_units_and_identifiers() -> None:
    assert component_of("nova-compute.service", "nova-compute") == "nova"
    assert component_of("devstack@n-cpu.service", "nova-compute") == "nova"
    assert component_of("devstack@q-svc.service", "neutron-server") == "neutron"
    assert component_of("devstack@c-vol.service", None) == "cinder"
    assert component_of("openstack-nova-compute.service", None) == "nova"
    assert component_of("neutron-openvswitch-agent.service", None) == "neutron"
    assert component_of("session-3.scope", "sshd") == "sshd"
    assert component_of(None, "rabbitmq-server") == "rabbitmq"
    assert component_of("libvirtd.service", "libvirtd") == "libvirt"
    assert component_of(None, None) == ""


async def test_entries_map_to_records_and_a_traceback_stays_one(tmp_path: Path) -> None:
    journal_append(tmp_path / "journal", [
        entry("Claim successful on node cn01.example.org"),
        entry(TRACEBACK, priority=3),
        entry("Port a1b2c3d4 bound", unit="devstack@q-svc.service", ident="neutron-server", pid=2210, priority=4),
    ])
    async with InProcessAgent(journald_settings(tmp_path, tags=["compute"]), MemoryBus()) as agent:
        got = await agent.collect(lambda got: len(got) == 3)
    first, tb, port = got
    assert first.lines == ["Claim successful on node cn01.example.org"]
    assert (first.host, first.component, first.type, first.tags) == ("cn01", "nova", "journald", ["compute"])
    extra = first.model_extra or {}
    assert (extra["level"], extra["priority"], extra["pid"], extra["unit"]) == ("INFO", 6, 31842, "nova-compute.service")
    assert extra["syslog_identifier"] == "nova-compute" and extra["timestamp"].endswith("Z")
    assert tb.lines == TRACEBACK.split("\n") and (tb.model_extra or {})["level"] == "ERROR"
    assert port.component == "neutron" and (port.model_extra or {})["level"] == "WARNING"
    assert port.path == "journald:devstack@q-svc.service"
    assert len({r.id for r in got}) == 3


async def test_each_entry_ships_once_across_a_restart(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    journal_append(journal, [entry(f"before {i}") for i in range(20)])
    s = journald_settings(tmp_path)
    async with InProcessAgent(s, MemoryBus()) as agent:
        first = await agent.collect(lambda got: len(got) == 20)
        journal_append(journal, [entry(f"while running {i}") for i in range(5)])  # followed, not polled
        first = await agent.collect(lambda got: len(got) == 25)
    journal_append(journal, [entry(f"while stopped {i}") for i in range(7)])
    async with InProcessAgent(s, MemoryBus()) as agent:
        second = await agent.collect(lambda got: len(got) == 7)
        await asyncio.sleep(0.5)  # anything re-sent would arrive now
        second = await agent.collect(lambda got: True)
    assert [r.lines[0] for r in second] == [f"while stopped {i}" for i in range(7)]
    texts = [r.lines[0] for r in first + second]
    assert len(texts) == len(set(texts)) == 32
    assert len({r.id for r in first + second}) == 32


async def test_since_now_skips_the_past_and_bad_output_is_counted(tmp_path: Path) -> None:
    journal_append(tmp_path / "journal", [entry("old")])
    script = tmp_path / "journalctl"
    # A journalctl that prints a broken line and an entry without a cursor before the real output.
    script.write_text("#!/bin/sh\nprintf 'not json\\n{\"MESSAGE\": \"no cursor\"}\\n'\nexec journalctl \"$@\"\n")
    script.chmod(0o755)
    before = REGISTRY.get_sample_value("telemetry_agent_journald_errors_total", {"reason": "bad_entry"}) or 0.0
    s = journald_settings(tmp_path, since="now", journalctl=str(script))
    async with InProcessAgent(s, MemoryBus()) as agent:
        await asyncio.sleep(1.0)
        journal_append(tmp_path / "journal", [entry("new")])
        got = await agent.collect(lambda got: len(got) == 1)
    assert got[0].lines == ["new"]
    assert REGISTRY.get_sample_value("telemetry_agent_journald_errors_total", {"reason": "bad_entry"}) == before + 2


def test_config_errors_name_the_problem() -> None:
    from telemetry.config.loader import ConfigError, validate

    with pytest.raises(ConfigError, match="directory or files"):
        validate({"sources": {"journald": {"directory": "/var/log/journal", "files": ["/tmp/x.journal"]}}})
    with pytest.raises(ConfigError, match="FIELD=value"):
        validate({"sources": {"journald": {"matches": ["nova-compute"]}}})
    assert validate({"sources": {"journald": {}}}).sources.journald.enabled  # written: on
    assert not validate({}).sources.journald.enabled
