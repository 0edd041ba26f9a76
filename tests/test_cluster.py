"""Two ``telemetry server`` processes on one bus (librdkafka's mock Kafka, or RabbitMQ) and one PostgreSQL.

100 alarms over samples keyed to 100 resources are divided between the two
servers; each fires exactly once when breached, and its webhook arrives
once. One server is killed with SIGKILL while breaches keep coming: nothing
is lost, nothing is sent twice, and the dead server's alarms are evaluated
again by the survivor within 30 s.
"""

from __future__ import annotations

import asyncio
import collections
import secrets
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from actions_support import Receiver
from busenv import BUS_SITE, amqp_url, kafka  # noqa: F401 (fixtures)
from store_support import pg_database  # noqa: F401 (fixture)

from telemetry.bus import open_bus
from telemetry.bus.records import publish_records
from telemetry.cluster.membership import owner_of
from telemetry.config.core import BusConfig, KafkaOptions
from telemetry.models import Sample

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

N_ALARMS = 100
KAFKA_FAST = {"session_timeout": "6s", "heartbeat_interval": "0.5s", "linger_ms": 1}
ENV = {"PYTHONPATH": BUS_SITE}


def pg_schema(base: str) -> str:
    schema = f"c_{secrets.token_hex(4)}"
    with psycopg.connect(base, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    return f"{base}?options=-csearch_path%3D{schema}"


def rules_file(folder: Path, hook: str) -> None:
    alarms = [{"name": f"load-{i}", "type": "threshold", "severity": "critical",
               "alarm_actions": [f"{hook}/alarm/{i}"],
               "threshold_rule": {"meter_name": "test.load", "threshold": 50, "comparison_operator": "gt",
                                  "statistic": "max", "period": 60, "evaluation_periods": 1,
                                  "query": [{"field": "resource_id", "op": "eq", "value": f"r{i}"}]}}
              for i in range(N_ALARMS)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cluster.yaml").write_text(yaml.safe_dump({"alarms": alarms}))


def server_config(bus: dict[str, Any], pg: str, member: str, rules: Path) -> dict[str, Any]:
    return {
        "bus": bus,
        "cluster": {"url": pg, "member": member, "heartbeat": "1s", "lease": "4s", "refresh": "0.5s",
                    "delivery_lease": "10s"},
        "store": {"samples": {"url": pg}},
        "rules": {"paths": [str(rules)], "tick": 0.5},
        "actions": {"timeout": "2s", "backoff_initial": "0.2s", "backoff_max": "1s", "inhibit": None},
        "sources": {"host_metrics": {"enabled": False}, "ceilometer": {"enabled": False}, "files": []},
    }


def breach(i: int, value: float = 99.0) -> Sample:
    return Sample(counter_name="test.load", counter_type="gauge", counter_unit="%", counter_volume=value,
                  resource_id=f"r{i}", message_id=f"s-{i}-{uuid.uuid4().hex[:6]}")


def members(url: str) -> list[str]:
    try:
        health = httpx.get(url + "/healthz", timeout=2).json()
    except httpx.HTTPError:
        return []
    return list(health["components"].get("cluster", {}).get("members", []))


async def wait_for(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("kind", ["kafka", "amqp"])
async def test_two_servers_share_alarms_and_survive_a_kill(kind: str, request: pytest.FixtureRequest,
                                                           daemon_factory, pg_database: str,
                                                           tmp_path: Path) -> None:
    url = request.getfixturevalue("amqp_url") if kind == "amqp" else request.getfixturevalue("kafka").url
    prefix = f"cl{uuid.uuid4().hex[:6]}."
    bus_section = {"url": url, "topic_prefix": prefix, "kafka": KAFKA_FAST, "publish_timeout": "20s"}
    pg = pg_schema(pg_database)
    hook = await Receiver().start()
    rules_file(tmp_path / "rules", hook.url)
    bus = open_bus(BusConfig(url=url, topic_prefix=prefix, kafka=KafkaOptions(linger_ms=1)))
    await bus.start()
    await publish_records(bus, [breach(0, 1.0)])  # creates the topics before the groups split them
    a = daemon_factory("server", server_config(bus_section, pg, "a", tmp_path / "rules"), env=ENV, sub="a").start()
    b = daemon_factory("server", server_config(bus_section, pg, "b", tmp_path / "rules"), env=ENV, sub="b").start()
    try:
        await wait_for(lambda: members(a.url) == ["a", "b"] == members(b.url), 30, "both servers to see each other")
        ids = {i: httpx.get(f"{a.url}/v2/alarms", params={"q.field": "name", "q.value": f"load-{i}"},
                            timeout=5).json()[0]["alarm_id"] for i in range(N_ALARMS)}
        owned_by_a = {i for i, aid in ids.items() if owner_of(aid, ["a", "b"]) == "a"}
        assert 20 < len(owned_by_a) < 80, "the alarms are divided between the servers"
        await asyncio.sleep(3)  # the consumer groups settle

        # Phase 1: half the alarms breached, both servers alive: each fires once.
        first = list(range(0, N_ALARMS, 2))
        await publish_records(bus, [breach(i) for i in first])
        await wait_for(lambda: {int(r["path"].rsplit("/", 1)[1]) for r in hook.requests} >= set(first), 60,
                       "the first half's webhooks")

        # Phase 2: the rest breached in a stream, and server a killed in the middle of it.
        rest = list(range(1, N_ALARMS, 2))
        await publish_records(bus, [breach(i) for i in rest[:25]])
        await asyncio.sleep(0.3)
        a.stop(signal.SIGKILL)
        killed_at, killed_wall = time.monotonic(), time.time()
        for chunk in (rest[25:38], rest[38:]):
            await publish_records(bus, [breach(i) for i in chunk])
            await asyncio.sleep(1.0)
        await wait_for(lambda: members(b.url) == ["b"], 30, "the survivor to see a gone")
        await wait_for(lambda: len({r["path"] for r in hook.requests}) >= N_ALARMS, 60, "every alarm's webhook")
        took = time.monotonic() - killed_at
        late_of_a = set(rest[38:]) & owned_by_a
        assert late_of_a, "some of a's alarms were breached only after it died"
        assert took < 45, f"the dead server's alarms took {took:.0f}s to be evaluated again"

        await asyncio.sleep(12)  # past the dead server's delivery lease (10 s): what it had claimed went out again

        # Exactly once. Each alarm was notified by one outbox row (one delivery id): no transition was decided
        # twice, no row queued twice. A request repeats only if the dead server had it in flight when it died
        # (the receiver may have got it, the outbox cannot know): it comes again with the same delivery id, for
        # the receiver to drop, once the claim ran out, and from the survivor.
        ids_per_alarm: dict[str, set[str]] = collections.defaultdict(set)
        arrivals: dict[str, list[float]] = collections.defaultdict(list)
        for r in hook.requests:
            ids_per_alarm[r["path"]].add(r["headers"]["x-telemetry-delivery"])
            arrivals[r["headers"]["x-telemetry-delivery"]].append(r["at"])
        assert len(ids_per_alarm) == N_ALARMS
        assert {p: d for p, d in ids_per_alarm.items() if len(d) > 1} == {}, "an alarm notified twice"
        for delivery, times in arrivals.items():
            if len(times) > 1:
                assert len(times) == 2 and times[0] <= killed_wall + 0.5 and times[1] >= killed_wall + 9, \
                    f"delivery {delivery} repeated at {times} (server killed at {killed_wall})"
        for i in (*rest[:3], *sorted(late_of_a)[:3], *first[:3]):
            hist = httpx.get(f"{b.url}/v2/alarms/{ids[i]}/history", timeout=5).json()
            to_alarm = [h for h in hist if h["type"] == "state transition" and '"state": "alarm"' in h["detail"]]
            assert len(to_alarm) == 1, (i, hist)
            assert httpx.get(f"{b.url}/v2/alarms/{ids[i]}", timeout=5).json()["state"] == "alarm"
    finally:
        await bus.close()
        await hook.stop()
        a.kill()
        b.kill()


LINE = ("{ts} 31007 INFO nova.compute.manager [req-{req} 6f1c0a3b2e8d4d7c9b1a2f3e4d5c6b7a "
        "9a8b7c6d5e4f4a3b2c1d0e9f8a7b6c5d - default default] cluster line seq={i}\n")


def count_seen(url: str) -> set[int]:
    """The seq numbers of the lines a server's search returns (each must appear once)."""
    r = httpx.get(url + "/v1/events", params={"q": "host:cl-agent", "limit": 10000}, timeout=30)
    r.raise_for_status()
    seqs = [int(e["message"].rsplit("seq=", 1)[1]) for e in r.json()]
    assert len(seqs) == len(set(seqs)), "a line stored twice"
    return set(seqs)


@pytest.mark.parametrize("kind", ["kafka", "amqp"])
async def test_a_search_on_either_server_returns_every_line_once(kind: str, request: pytest.FixtureRequest,
                                                                 daemon_factory, pg_database: str,
                                                                 tmp_path: Path) -> None:
    from datetime import datetime, timezone

    url = request.getfixturevalue("amqp_url") if kind == "amqp" else request.getfixturevalue("kafka").url
    prefix = f"ev{uuid.uuid4().hex[:6]}."
    bus_section = {"url": url, "topic_prefix": prefix, "kafka": KAFKA_FAST, "publish_timeout": "20s"}
    pg = pg_schema(pg_database)
    (tmp_path / "rules").mkdir()
    servers = []
    for m in ("a", "b"):
        cfg = server_config(bus_section, pg, m, tmp_path / "rules")
        cfg["store"]["events"] = {"url": pg}
        servers.append(daemon_factory("server", cfg, env=ENV, sub=m).start())
    a, b = servers
    log = tmp_path / "logs" / "nova.log"
    log.parent.mkdir()
    log.touch()
    agent = daemon_factory("agent", {
        "host": "cl-agent", "bus": bus_section,
        "sources": {"host_metrics": {"enabled": False}, "ceilometer": {"enabled": False},
                    "files": [{"paths": [str(log)], "fields": {"type": "openstack", "component": "nova"}}]},
    }, env=ENV, sub="agent").start()
    n = 3000
    try:
        await wait_for(lambda: members(a.url) == ["a", "b"] == members(b.url), 30, "both servers to see each other")
        with log.open("a") as f:
            for i in range(n):
                ts = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
                f.write(LINE.format(ts=ts, req=uuid.uuid4(), i=i))
                if i == n // 2:
                    f.flush()
                    await asyncio.sleep(1.0)
                    a.stop(signal.SIGKILL)  # mid-stream: what it had not acked goes to b
        await wait_for(lambda: len(count_seen(b.url)) >= n, 90, "every line searchable on the survivor")
        assert count_seen(b.url) == set(range(n))
        a.start()
        await wait_for(lambda: members(b.url) == ["a", "b"], 30, "a to come back")
        assert count_seen(a.url) == set(range(n))  # the same answer on either server
    finally:
        agent.kill()
        a.kill()
        b.kill()
