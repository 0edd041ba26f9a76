"""End to end: every sample log file tailed, parsed and stored, plus the sample notifications;
``telemetry search --request-id`` of the nova request in nova-compute.log returns exactly its lines in order.

This needs the whole chain of the running daemon: the file tail source, the
parse stage (``telemetry.parse``) and this branch's event store. The import
in the test makes a missing parse stage fail at once with a clear ImportError
instead of a timeout.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import httpx
import yaml
from click.testing import CliRunner

from telemetry.cli import main

REQ = "req-7d1e2a40-5b3c-4f0e-9a55-0c2d6b3e8f11"
#: Parser type of each sample file that is not an oslo.log service (as in DEFAULT_LOG_GLOBS).
TYPES = {"rabbitmq": "rabbitmq", "mariadb": "mariadb", "horizon-access": "apache", "libvirtd": "libvirt",
         "ovs-vswitchd": "ovs", "swift-proxy": "syslog", "haproxy": "syslog", "syslog": "syslog"}


def file_sources(logs: Path, samples: Path) -> list[dict]:
    out = []
    for f in sorted((samples / "logs").iterdir()):
        stem = f.name.removesuffix(".log")
        kind = TYPES.get(stem, "openstack")
        multiline: object = "python" if kind == "openstack" else "none"
        if kind == "rabbitmq":
            multiline = {"pattern": r"^(=[A-Z]+ REPORT|\d{4}-\d{2}-\d{2})", "negate": True, "what": "previous"}
        out.append({"paths": [str(logs / f.name)], "fields": {"type": kind, "component": stem.split("-")[0]},
                    "multiline": multiline})
    return out


def wait_stable(url: str, minimum: int, timeout: float = 30.0) -> int:
    """The number of stored events once it stops growing."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = len(httpx.get(url + "/v1/events", params={"limit": 10_000}).json())
        if n != last:
            last, since = n, time.monotonic()
        elif n >= minimum and time.monotonic() - since > 1.5:
            return n
        time.sleep(0.2)
    raise AssertionError(f"events did not settle: {last} stored, expected at least {minimum}")


def test_request_id_path_from_every_sample(daemon_factory, samples_dir: Path) -> None:
    import telemetry.parse  # noqa: F401  (the parse stage must be part of the daemon; fails fast without it)

    d = daemon_factory("run", {"store": {"ttl": {"events": "3650d"}}})  # the samples are from March 2026
    logs = d.tmp / "logs"
    logs.mkdir()
    cfg = yaml.safe_load(d.config_path.read_text())
    cfg["sources"]["files"] = file_sources(logs, samples_dir)
    d.config_path.write_text(yaml.safe_dump(cfg))
    d.start()
    for f in (samples_dir / "logs").iterdir():  # new files while running: read from their first line
        shutil.copy(f, logs / f.name)
    wait_stable(d.url, minimum=40)
    envelopes = [json.loads(p.read_text()) for p in sorted((samples_dir / "notifications").glob("*.json"))]
    assert httpx.post(d.url + "/v1/events", json=envelopes).status_code == 202

    nova_lines = [x for x in (samples_dir / "logs" / "nova-compute.log").read_text().splitlines() if REQ in x]
    assert len(nova_lines) == 3
    deadline = time.monotonic() + 10
    while True:
        result = CliRunner().invoke(main, ["search", "--request-id", REQ, "-f", "json", "--url", d.url])
        path = [json.loads(x) for x in result.output.splitlines()] if result.exit_code == 0 else []
        if len(path) >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert result.exit_code == 0, result.output

    logged = [e for e in path if e["type"] != "notification"]
    assert len(logged) == 3, [e["message"] for e in path]
    for event, raw in zip(logged, nova_lines):
        stamp = re.match(r"(\S+ \S+)", raw).group(1)  # type: ignore[union-attr]
        assert event["@timestamp"].startswith(stamp.replace(" ", "T")), (event, raw)
        assert event["component"] == "nova" and event["request_id"] == REQ and event["level"] == "INFO"
        assert event["message"] and event["message"] in raw
    assert [e["type"] for e in path] == ["openstack", "openstack", "openstack", "notification"]
    assert path[-1]["event_type"] == "compute.instance.create.end"
    d.stop()
