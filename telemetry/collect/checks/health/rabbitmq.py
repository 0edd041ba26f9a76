"""RabbitMQ, the cloud's nervous system: queue depth and consumers, descriptors, sockets, partitions.

Asked through the management API when it answers, else through
``rabbitmqctl`` (always there on a RabbitMQ node, but a second or more per
call, so it is the fallback). The operations guides' warning signs are all
here: a queue that grows with no consumer, file descriptors or sockets near
their limit, and a partitioned cluster.
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any, Literal

import httpx
from pydantic import Field

from telemetry.collect.checks.health.base import CheckResult, HealthCheck, installed
from telemetry.collect.checks.keys import quote_param

__all__ = ["RabbitmqCheck"]

Values = list[tuple[str, float, dict[str, Any]]]


class RabbitmqCheck(HealthCheck):
    check: Literal["rabbitmq"]
    management_url: str = Field("http://127.0.0.1:15672", description="Management plugin base URL")
    user: str = "guest"
    password: str = "guest"
    rabbitmqctl: str = Field("rabbitmqctl", description="The CLI used when the management API does not answer")
    queues: str = Field("", description="Regular expression: only matching queues get per-queue values")
    max_queues: int = Field(100, ge=0, description="Per-queue values for at most this many, deepest first")

    def run(self, timeout: float) -> CheckResult:
        try:
            queues, nodes = self._management(timeout)
            via = "management API"
        except (httpx.HTTPError, ValueError, KeyError) as api_error:
            if not installed(self.rabbitmqctl, "rabbitmq-server"):
                return CheckResult.skipped("no management API and no rabbitmqctl")
            try:
                queues, nodes = self._cli(timeout)
                via = "rabbitmqctl"
            except (OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
                return CheckResult.failed(f"management API: {api_error}; rabbitmqctl: {exc}",
                                          [("rabbitmq.ping", 0.0, {})])
        return self._result(queues, nodes, via)

    def _management(self, timeout: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        with httpx.Client(base_url=self.management_url, auth=(self.user, self.password), timeout=timeout) as c:
            q = c.get("/api/queues", params={"columns": "name,vhost,messages,consumers"})
            q.raise_for_status()
            n = c.get("/api/nodes")
            n.raise_for_status()
        nodes = [{"name": x["name"], "running": bool(x.get("running")), "fd_used": x["fd_used"],
                  "fd_total": x["fd_total"], "sockets_used": x["sockets_used"],
                  "sockets_total": x["sockets_total"], "partitions": len(x.get("partitions") or [])}
                 for x in n.json()]
        return list(q.json()), nodes

    def _ctl(self, timeout: float, *args: str) -> Any:
        out = subprocess.run([self.rabbitmqctl, *args, "-q", "--formatter", "json"], capture_output=True,
                             timeout=timeout, check=True, text=True)
        return json.loads(out.stdout or "null")

    def _cli(self, timeout: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        status = self._ctl(timeout, "status")
        cluster = self._ctl(timeout, "cluster_status")
        queues: list[dict[str, Any]] = []
        vhosts = self._ctl(timeout, "list_vhosts", "name") or [{"name": "/"}]
        for vh in vhosts:
            for q in self._ctl(timeout, "list_queues", "-p", vh["name"], "name", "messages", "consumers") or []:
                queues.append({**q, "vhost": vh["name"]})
        fds = status["file_descriptors"]
        partitions = cluster.get("partitions") or {}
        node = {"name": status.get("node") or (cluster.get("running_nodes") or ["local"])[0], "running": True,
                "fd_used": fds["total_used"], "fd_total": fds["total_limit"],
                "sockets_used": fds["sockets_used"], "sockets_total": fds["sockets_limit"],
                "partitions": sum(len(v) for v in partitions.values()) if isinstance(partitions, dict)
                else len(partitions)}
        others = [{"name": n, "running": True} for n in cluster.get("running_nodes", []) if n != node["name"]]
        return queues, [node, *others]

    def _result(self, queues: list[dict[str, Any]], nodes: list[dict[str, Any]], via: str) -> CheckResult:
        meta = {"via": via}
        values: Values = [("rabbitmq.ping", 1.0, meta)]
        local = nodes[0] if nodes else {}
        problems = []
        for what, used, total in (("fd", "fd_used", "fd_total"), ("sockets", "sockets_used", "sockets_total")):
            if used in local and local.get(total):
                pct = 100.0 * local[used] / local[total]
                values += [(f"rabbitmq.{what}.used", float(local[used]), meta),
                           (f"rabbitmq.{what}.limit", float(local[total]), meta),
                           (f"rabbitmq.{what}.pused", round(pct, 3), meta)]
                if pct >= 90:
                    problems.append(f"{what} at {pct:.0f}% of the limit")
        partitions = sum(int(n.get("partitions", 0)) for n in nodes)
        values += [("rabbitmq.partitions", float(partitions), meta),
                   ("rabbitmq.nodes.running", float(sum(1 for n in nodes if n.get("running"))), meta)]
        if partitions:
            problems.append(f"{partitions} network partition(s)")
        rx = re.compile(self.queues) if self.queues else None
        listed = [q for q in queues if rx is None or rx.search(str(q.get("name", "")))]
        values += [("rabbitmq.queues.count", float(len(queues)), meta),
                   ("rabbitmq.queues.messages", float(sum(int(q.get("messages") or 0) for q in queues)), meta),
                   ("rabbitmq.queues.without_consumers",
                    float(sum(1 for q in queues if not q.get("consumers") and q.get("messages"))), meta)]
        listed.sort(key=lambda q: -int(q.get("messages") or 0))
        for q in listed[: self.max_queues]:
            qm = {**meta, "queue": q["name"], "vhost": q.get("vhost", "/")}
            values += [(f"rabbitmq.queue.messages[{quote_param(q['name'])}]", float(q.get("messages") or 0), qm),
                       (f"rabbitmq.queue.consumers[{quote_param(q['name'])}]", float(q.get("consumers") or 0), qm)]
        return CheckResult.failed("; ".join(problems), values) if problems else CheckResult.ok(values)
