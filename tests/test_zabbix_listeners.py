"""Zabbix's own clients and agent against our listeners, and our poller against Zabbix's agent.

Peers: zabbix_utils' Sender and Getter (PyPI) and Debian's ``zabbix_agentd``
6.0, each started here on free ports.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from zabbix_utils import Getter, ItemValue, Sender

from telemetry.bus.memory import MemoryBus
from telemetry.collect.checks.items import ItemCollector
from telemetry.collect.zabbix.active import ActiveChecksClient
from telemetry.collect.zabbix.passive import PassiveListener
from telemetry.collect.zabbix.poller import PollerSource
from telemetry.collect.zabbix.trapper import TrapperListener
from telemetry.config.zabbix import ZabbixActive, ZabbixPoller, ZabbixSource

from zabbix_support import Agentd, drain_samples

CFG = ZabbixSource.model_validate({"trapper": "127.0.0.1:0", "passive": "127.0.0.1:0"})


@pytest.fixture
def agentd(tmp_path: Path) -> Iterator[Agentd]:
    a = Agentd(tmp_path).start()
    yield a
    a.stop()


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


# -- trapper ---------------------------------------------------------------------------
async def test_zabbix_sender_values_become_samples() -> None:
    bus = MemoryBus()
    trapper = TrapperListener(CFG, bus)
    await trapper.start()
    try:
        sender = Sender(server="127.0.0.1", port=_port(trapper.address))
        clock = int(time.time()) - 30
        resp = await asyncio.to_thread(sender.send, [
            ItemValue("web-1", "nginx.requests", 1234, clock, 5),
            ItemValue("web-1", "app.latency[p99]", "0.25", clock),
            ItemValue("web-1", "app.version", "v1.2.3", clock),  # text: failed, the others still taken
        ])
        assert (resp.processed, resp.failed, resp.total) == (2, 1, 3), resp
        samples = {s.counter_name: s for s in await drain_samples(bus, "t", 2)}
        assert samples["nginx.requests"].counter_volume == 1234.0
        assert samples["nginx.requests"].resource_id == "web-1"
        assert samples["nginx.requests"].resource_metadata["host"] == "web-1"
        assert samples["nginx.requests"].timestamp.timestamp() == pytest.approx(clock + 5e-9)
        assert samples["app.latency[p99]"].counter_volume == 0.25
        one = await asyncio.to_thread(sender.send_value, "web-2", "queue.depth", 7)
        assert (one.processed, one.failed) == (1, 0)
        assert [s.counter_volume for s in await drain_samples(bus, "t", 1)] == [7.0]
    finally:
        await trapper.stop()


async def test_real_zabbix_sender_binary(tmp_path: Path) -> None:
    """Debian's zabbix_sender (C) speaks the same protocol as zabbix_utils'."""
    sender = "/usr/bin/zabbix_sender"
    if not os.path.exists(sender):
        pytest.fail("zabbix_sender is missing (Debian package zabbix-sender)")
    bus = MemoryBus()
    trapper = TrapperListener(CFG, bus)
    await trapper.start()
    try:
        out = await asyncio.to_thread(subprocess.run, [sender, "-z", "127.0.0.1", "-p", str(_port(trapper.address)),
                                                       "-s", "db-1", "-k", "mysql.qps", "-o", "42.5"],
                                      capture_output=True, text=True, timeout=20)
        assert "processed: 1; failed: 0; total: 1" in out.stdout, out.stdout + out.stderr
        [s] = await drain_samples(bus, "t", 1)
        assert (s.counter_name, s.counter_volume, s.resource_id) == ("mysql.qps", 42.5, "db-1")
    finally:
        await trapper.stop()


# -- passive listener --------------------------------------------------------------------
#: Keys whose value does not move between two polls a moment apart (compared exactly with zabbix_agentd).
STABLE = [
    "agent.ping", "vm.memory.size[total]", "vfs.file.cksum[/etc/passwd]", "vfs.file.cksum[/etc/passwd,md5]",
    "vfs.file.size[/etc/passwd]", "vfs.file.size[/etc/passwd,lines]", "system.boottime", "system.cpu.num",
    "vfs.fs.discovery", "net.if.discovery", "net.tcp.listen[1]", "net.tcp.port[127.0.0.1,1]",
]
#: Keys that move a little between polls: compared within a tolerance.
MOVING = {
    "system.cpu.load[all,avg1]": 1.0, "system.cpu.load[all,avg5]": 0.5, "system.cpu.load[all,avg15]": 0.5,
    "vm.memory.size[available]": 0.05, "vm.memory.size[pused]": 0.05, "vfs.fs.size[/,free]": 0.01,
    "vfs.fs.size[/,used]": 0.01, "vfs.fs.size[/,pused]": 0.01, "vfs.fs.inode[/,pfree]": 0.01,
    "system.uptime": 0.01, "system.cpu.switches": 0.05, "net.if.in[lo]": 0.5, "net.if.out[lo]": 0.5,
}


async def test_getter_polls_our_agent_like_zabbix_agentd(agentd: Agentd) -> None:
    items = ItemCollector("zbx-test")
    items.cpu.sample()
    passive = PassiveListener(CFG, items)
    await passive.start()
    ours, theirs = Getter(port=_port(passive.address)), Getter(port=agentd.port)
    try:
        await asyncio.sleep(1.1)
        items.cpu.sample()
        keys = STABLE + list(MOVING) + [
            f"net.tcp.port[127.0.0.1,{agentd.port}]", f"net.tcp.listen[{agentd.port}]",
            "proc.num[zabbix_agentd]", "proc.num[zabbix_agentd,root]", "proc.num[,,,zabbix_agentd]",
            "proc.num[,,zomb]",
        ]
        for key in keys:
            a = await asyncio.to_thread(ours.get, key)
            b = await asyncio.to_thread(theirs.get, key)
            assert a.error is None and b.error is None, (key, a, b)
            if key in MOVING:
                x, y = float(a.value), float(b.value)
                assert abs(x - y) <= max(MOVING[key] * abs(y), 0.5), (key, x, y)
            else:
                assert a.value == b.value, (key, a.value, b.value)
        for key in ("system.cpu.util[,user]", "system.cpu.util[,idle]", "system.cpu.util[,steal]",
                    "system.cpu.util[,iowait]", "system.cpu.util[,system]"):
            a = await asyncio.to_thread(ours.get, key)
            assert a.error is None and 0.0 <= float(a.value) <= 100.0, (key, a)
        shares = [float((await asyncio.to_thread(ours.get, f"system.cpu.util[,{t}]")).value)
                  for t in ("user", "nice", "system", "idle", "iowait", "interrupt", "softirq", "steal")]
        assert sum(shares) == pytest.approx(100.0, abs=2.0)  # the fields add up, as Zabbix's do
        for key, reason in (("no.such.key", "Unsupported item key."),
                            ("vfs.fs.size[/no/such/dir,free]", "Cannot obtain filesystem information"),
                            ("vm.memory.size[bogus]", "Invalid first parameter."),
                            ("net.if.in[nonexistent0]", "Cannot find information for this network interface")):
            a = await asyncio.to_thread(ours.get, key)
            b = await asyncio.to_thread(theirs.get, key)
            assert a.value is None and a.error.startswith(reason), (key, a)
            assert b.value is None and b.error.startswith(reason), (key, b)  # the same words as Zabbix
    finally:
        await passive.stop()


async def test_proc_num_states_and_users_match_zabbix_agentd(agentd: Agentd, tmp_path: Path) -> None:
    sleepers = [subprocess.Popen(["sleep", "300"]) for _ in range(3)]
    try:
        items = ItemCollector("zbx-test")
        passive = PassiveListener(CFG, items)
        await passive.start()
        try:
            ours, theirs = Getter(port=_port(passive.address)), Getter(port=agentd.port)
            for key in ("proc.num[sleep]", "proc.num[sleep,root,sleep]", "proc.num[sleep,,all,^sleep 300$]",
                        "proc.num[sleep,nobody]", "proc.num[,nosuchuser]"):
                a = await asyncio.to_thread(ours.get, key)
                b = await asyncio.to_thread(theirs.get, key)
                assert a.value == b.value, (key, a, b)
            assert int((await asyncio.to_thread(ours.get, "proc.num[sleep,,all,^sleep 300$]")).value) >= 3
        finally:
            await passive.stop()
    finally:
        for p in sleepers:
            p.kill()
            p.wait()


# -- poller ------------------------------------------------------------------------------
async def test_poller_reads_a_real_zabbix_agent(agentd: Agentd) -> None:
    keys = ["agent.ping", "vm.memory.size[total]", "vfs.file.cksum[/etc/passwd]", "system.boottime",
            f"net.tcp.listen[{agentd.port}]", "system.cpu.load[all,avg15]", "no.such.key"]
    cfg = ZabbixPoller.model_validate({"timeout": "5s", "targets": [
        {"host": "legacy-1", "address": agentd.address, "keys": keys, "role": "compute"}]})
    bus = MemoryBus()
    poller = PollerSource(cfg, bus)
    got = {s.counter_name: s for s in await poller.poll(cfg.targets[0])}
    direct = Getter(port=agentd.port)
    for key in keys[:5]:
        assert got[key].counter_volume == float((await asyncio.to_thread(direct.get, key)).value), key
        assert got[key].resource_id == "legacy-1"
        assert got[key].resource_metadata == {"host": "legacy-1", "role": "compute", "agent": agentd.address}
    assert got["system.cpu.load[all,avg15]"].counter_volume == pytest.approx(
        float((await asyncio.to_thread(direct.get, "system.cpu.load[all,avg15]")).value), abs=0.2)
    assert "no.such.key" not in got
    assert poller.status["legacy-1:no.such.key"] == "ZBX_NOTSUPPORTED: Unsupported item key."
    assert len(await drain_samples(bus, "t", 6)) == 6  # published on the bus as well

    # An agent that is gone costs a status, not the poller.
    agentd.stop()
    assert await poller.poll(cfg.targets[0]) == []
    assert poller.status["legacy-1:agent.ping"].startswith("error: ConnectionRefusedError")


# -- active checks ------------------------------------------------------------------------
async def test_real_agent_in_active_mode_takes_items_from_our_trapper(tmp_path: Path) -> None:
    bus = MemoryBus()
    trapper = TrapperListener(CFG, bus, default_interval=60.0)
    await trapper.start()
    agent = Agentd(tmp_path, hostname="ctl-1", server_active=trapper.address, host_metadata="Linux controller")
    try:
        await asyncio.to_thread(agent.start)
        samples = await drain_samples(bus, "t", 10, timeout=25)
        by_key = {s.counter_name: s for s in samples}
        assert "agent.ping" in by_key, agent.log()[-2000:]
        assert by_key["agent.ping"].counter_volume == 1.0
        assert by_key["agent.ping"].resource_id == "ctl-1"
        assert by_key["agent.ping"].resource_metadata["role"] == "controller"  # from its HostMetadata
        assert by_key["agent.ping"].source == "zabbix-agent"
        assert trapper.host_roles["ctl-1"] == ["controller"]
        assert "system.cpu.load[all,avg1]" in by_key or "vm.memory.size[available]" in by_key, sorted(by_key)
    finally:
        await asyncio.to_thread(agent.stop)
        await trapper.stop()


async def test_our_active_client_against_our_trapper() -> None:
    bus = MemoryBus()
    trapper = TrapperListener(CFG, bus)
    await trapper.start()
    try:
        cfg = ZabbixActive.model_validate({"server": trapper.address, "send_interval": "1s"})
        client = ActiveChecksClient(cfg, ItemCollector("cmp-1"), "cmp-1", "compute")
        client.items.cpu.sample()
        await client.refresh()
        assert client.checks["agent.ping"] == 30.0 and "system.cpu.switches" in client.checks
        n = await client.collect_due()
        assert n == len(client.checks) and len(client.buffer) == n
        assert await client.collect_due() == 0  # nothing is due again yet
        sent = await client.send()
        assert not client.buffer
        samples = await drain_samples(bus, "t", sent)
        by_key = {s.counter_name: s for s in samples}
        assert by_key["agent.ping"].resource_metadata == {"host": "cmp-1", "role": "compute"}
        # Values the server could not take (none here) would be failed, not dropped silently:
        assert trapper.failed == n - len(samples)
    finally:
        await trapper.stop()

    # With the server gone, values stay buffered for the next push.
    await client.collect_due()
    client._next.clear()
    await client.collect_due()
    with pytest.raises(OSError):
        await client.send()
    assert client.buffer


async def test_agent_data_with_unsupported_items_counts_them_failed() -> None:
    from telemetry.collect.zabbix.client import request_json

    bus = MemoryBus()
    trapper = TrapperListener(CFG, bus)
    await trapper.start()
    try:
        now = int(time.time())
        doc = await request_json(trapper.address, {"request": "agent data", "session": "s1", "clock": now, "ns": 0,
                                                   "data": [
            {"host": "h", "key": "agent.ping", "value": "1", "id": 1, "clock": now, "ns": 0},
            {"host": "h", "key": "bad.key", "value": "Unsupported item key.", "state": 1, "id": 2, "clock": now},
            {"host": "h", "key": "odd", "value": "12", "state": 1, "id": 3, "clock": now},
        ]}, 5)
        assert doc["response"] == "success" and doc["info"].startswith("processed: 1; failed: 2; total: 3;")
        [s] = await drain_samples(bus, "t", 1)
        assert s.counter_name == "agent.ping" and s.source == "zabbix-agent"
    finally:
        await trapper.stop()
