"""The high-availability layer: Pacemaker, HAProxy, keepalived's VIPs, and Ceph."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Literal

import httpx
import psutil
from pydantic import Field

from telemetry.collect.checks.health.base import CheckResult, HealthCheck, installed
from telemetry.collect.checks.keys import quote_param

__all__ = ["CephCheck", "HaproxyCheck", "KeepalivedCheck", "PacemakerCheck", "parse_crm_mon", "parse_haproxy_csv"]

Values = list[tuple[str, float, dict[str, Any]]]


def parse_crm_mon(xml_text: str) -> tuple[Values, list[str]]:
    """Values and problems from ``crm_mon -1 --output-as=xml`` (Pacemaker 2)."""
    root = ET.fromstring(xml_text)
    nodes = root.findall("./nodes/node")
    online = [n.get("name", "") for n in nodes if n.get("online") == "true"]
    values: Values = [("pacemaker.nodes.total", float(len(nodes)), {}),
                      ("pacemaker.nodes.online", float(len(online)), {"online": ",".join(online)})]
    problems = [f"node {n.get('name')} offline" for n in nodes if n.get("online") != "true"]
    stopped = 0
    for res in root.iter("resource"):
        rid = res.get("id", "")
        where = [n.get("name", "") for n in res.findall("node")]
        started = res.get("role") in ("Started", "Promoted", "Master", "Unpromoted", "Slave") and \
            res.get("active") == "true" and res.get("failed") != "true"
        if not started:
            stopped += 1
            problems.append(f"resource {rid} is {res.get('role', 'unknown')}")
        values.append((f"pacemaker.resource.started[{quote_param(rid)}]", float(started),
                       {"resource": rid, "started_on": ",".join(where), "role": res.get("role", "")}))
    values.append(("pacemaker.resources.stopped", float(stopped), {}))
    return values, problems


class PacemakerCheck(HealthCheck):
    """Nodes online and where each resource is started, from ``crm_mon -1``."""

    check: Literal["pacemaker"]
    crm_mon: str = "crm_mon"

    def run(self, timeout: float) -> CheckResult:
        if not installed(self.crm_mon):
            return CheckResult.skipped("crm_mon is not installed")
        try:
            out = subprocess.run([self.crm_mon, "-1", "--output-as=xml"], capture_output=True, text=True,
                                 timeout=timeout, check=False)  # exit 1 with XML still names what is down
            values, problems = parse_crm_mon(out.stdout)
        except (OSError, subprocess.SubprocessError, ET.ParseError) as exc:
            return CheckResult.failed(f"crm_mon: {exc}")
        return CheckResult.failed("; ".join(problems), values) if problems else CheckResult.ok(values)


def parse_haproxy_csv(text: str) -> tuple[Values, list[str]]:
    """``haproxy.server.up[<proxy>/<server>]`` and ``haproxy.backend.up[<proxy>]`` from ``show stat`` CSV."""
    lines = [x for x in text.splitlines() if x.strip()]
    if not lines or not lines[0].startswith("# "):
        raise ValueError("not HAProxy stats CSV (no '# pxname,svname,...' header)")
    cols = lines[0][2:].split(",")
    values: Values = []
    problems: list[str] = []
    for line in lines[1:]:
        row = dict(zip(cols, line.split(","), strict=False))
        px, sv, status = row.get("pxname", ""), row.get("svname", ""), row.get("status", "")
        if sv == "FRONTEND":
            continue
        up = status.startswith("UP") or status == "no check" or status == "OPEN"
        meta = {"proxy": px, "server": sv, "status": status}
        if sv == "BACKEND":
            values.append((f"haproxy.backend.up[{quote_param(px)}]", float(up), meta))
            if not up:
                problems.append(f"backend {px} is {status}")
        else:
            values.append((f"haproxy.server.up[{quote_param(f'{px}/{sv}')}]", float(up), meta))
            if status.startswith("DOWN"):
                problems.append(f"{px}/{sv} is {status}")
    return values, problems


class HaproxyCheck(HealthCheck):
    """Backend and server states from HAProxy's stats socket or its CSV page."""

    check: Literal["haproxy"]
    socket: str = Field("/run/haproxy/admin.sock", description="The stats socket (stats socket ... level admin)")
    csv_url: str | None = Field(None, description="Stats page CSV URL (…/stats;csv) when no socket is reachable")

    def _from_socket(self, timeout: float) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.socket)
            s.sendall(b"show stat\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", errors="replace")

    def run(self, timeout: float) -> CheckResult:
        try:
            if Path(self.socket).exists():
                text = self._from_socket(timeout)
            elif self.csv_url:
                r = httpx.get(self.csv_url, timeout=timeout)
                r.raise_for_status()
                text = r.text
            elif not installed("haproxy"):
                return CheckResult.skipped("HAProxy is not installed")
            else:
                return CheckResult.failed(f"no stats socket at {self.socket} and no csv_url")
            values, problems = parse_haproxy_csv(text)
        except (OSError, httpx.HTTPError, ValueError) as exc:
            return CheckResult.failed(f"HAProxy stats: {exc}")
        return CheckResult.failed("; ".join(problems), values) if problems else CheckResult.ok(values)


_VIP_BLOCK = re.compile(r"virtual_ipaddress\s*\{([^}]*)\}", re.S)


class KeepalivedCheck(HealthCheck):
    """Whether this node holds each VIP (``keepalived.vip[<address>]``); exactly one node of a pair should."""

    check: Literal["keepalived"]
    vips: list[str] = Field(default_factory=list, description="VIPs; default: virtual_ipaddress in `config`")
    config: str = "/etc/keepalived/keepalived.conf"

    def run(self, timeout: float) -> CheckResult:
        vips = list(self.vips)
        if not vips and Path(self.config).is_file():
            for block in _VIP_BLOCK.findall(Path(self.config).read_text(errors="replace")):
                vips += [line.split()[0].split("/")[0] for line in block.splitlines() if line.split()]
        if not vips:
            return CheckResult.skipped("no VIPs configured and no keepalived configuration")
        local = {a.address.split("%")[0] for addrs in psutil.net_if_addrs().values() for a in addrs}
        return CheckResult.ok([(f"keepalived.vip[{vip}]", float(vip in local), {"vip": vip}) for vip in vips])


class CephCheck(HealthCheck):
    """``ceph -s``: ``ceph.health`` is 0 for HEALTH_OK, 1 for HEALTH_WARN, 2 for HEALTH_ERR."""

    check: Literal["ceph"]
    ceph: str = "ceph"
    conf: str = "/etc/ceph/ceph.conf"

    def run(self, timeout: float) -> CheckResult:
        if not installed(self.ceph) or not Path(self.conf).exists():
            return CheckResult.skipped("no ceph CLI or no /etc/ceph/ceph.conf")
        try:
            out = subprocess.run([self.ceph, "-s", "-f", "json", "--connect-timeout", str(int(timeout))],
                                 capture_output=True, text=True, timeout=timeout + 1, check=True)
            health = json.loads(out.stdout)["health"]["status"]
        except (OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
            return CheckResult.failed(f"ceph -s: {exc}", [("ceph.health", 2.0, {"status": "unreachable"})])
        level = {"HEALTH_OK": 0.0, "HEALTH_WARN": 1.0}.get(health, 2.0)
        values = [("ceph.health", level, {"status": health})]
        return CheckResult.ok(values) if level == 0 else CheckResult.failed(health, values)
