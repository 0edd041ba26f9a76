"""The OpenStack services and the databases: processes per role, API endpoints, PostgreSQL, MariaDB, Galera."""

from __future__ import annotations

import re
import time
from typing import Any, Literal

import httpx
from pydantic import Field

from telemetry.collect.checks.health.base import CheckResult, HealthCheck, installed
from telemetry.collect.checks.procs import proc_num
from telemetry.config.base import Section

__all__ = ["EndpointsCheck", "GaleraCheck", "MysqlCheck", "PostgresCheck", "ProcessesCheck"]


class ProcessesCheck(HealthCheck):
    """How many processes of each service run (``proc.num[,,,<name>]``); 0 for an installed service is a failure."""

    check: Literal["processes"]
    names: list[str] = Field(min_length=1, description="Process names, matched as words of the command line")

    def run(self, timeout: float) -> CheckResult:
        values: list[tuple[str, float, dict[str, Any]]] = []
        absent, down = [], []
        for name in self.names:
            n = proc_num(cmdline=rf"(^|[/\s]){re.escape(name)}(\s|$|:)")
            if n == 0 and not installed(name):
                absent.append(name)
                continue
            if n == 0:
                down.append(name)
            values.append((f"proc.num[,,,{name}]", float(n), {"process": name}))
        if not values:
            return CheckResult.skipped(f"none of {', '.join(absent)} is installed")
        if down:
            return CheckResult.failed(f"not running: {', '.join(down)}", values)
        return CheckResult.ok(values)


class Endpoint(Section):
    name: str = Field(min_length=1)
    url: str
    expect: list[int] = Field(default_factory=lambda: [200, 300], description="Acceptable HTTP statuses")
    service: str | None = Field(None, description="Process or unit whose absence means 'not present'")


class EndpointsCheck(HealthCheck):
    """Each API endpoint answers on its port: ``openstack.endpoint.up|status|latency[<name>]``."""

    check: Literal["endpoints"]
    endpoints: list[Endpoint] = Field(min_length=1)

    def run(self, timeout: float) -> CheckResult:
        values: list[tuple[str, float, dict[str, Any]]] = []
        absent, bad = [], []
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            for ep in self.endpoints:
                meta = {"endpoint": ep.name, "url": ep.url}
                start = time.monotonic()
                try:
                    r = client.get(ep.url)
                except httpx.ConnectError:
                    if not installed(ep.service or ep.name):
                        absent.append(ep.name)
                        continue
                    bad.append(f"{ep.name} refused")
                    values.append((f"openstack.endpoint.up[{ep.name}]", 0.0, meta))
                    continue
                except httpx.HTTPError as exc:
                    bad.append(f"{ep.name}: {type(exc).__name__}")
                    values.append((f"openstack.endpoint.up[{ep.name}]", 0.0, meta))
                    continue
                latency = time.monotonic() - start
                up = r.status_code in ep.expect
                if not up:
                    bad.append(f"{ep.name} answered {r.status_code}")
                values += [(f"openstack.endpoint.up[{ep.name}]", float(up), meta),
                           (f"openstack.endpoint.status[{ep.name}]", float(r.status_code), meta),
                           (f"openstack.endpoint.latency[{ep.name}]", round(latency, 6), meta)]
        if not values:
            return CheckResult.skipped(f"no service behind {', '.join(absent)}")
        return CheckResult.failed("; ".join(bad), values) if bad else CheckResult.ok(values)


class PostgresCheck(HealthCheck):
    """PostgreSQL answers a query: ``pgsql.ping`` (1/0) and ``pgsql.latency``."""

    check: Literal["postgresql"]
    url: str = Field("postgresql://postgres@127.0.0.1:5432/postgres", description="libpq URL")

    def run(self, timeout: float) -> CheckResult:
        import psycopg

        start = time.monotonic()
        try:
            with psycopg.connect(self.url, connect_timeout=max(1, int(timeout))) as conn:
                conn.execute("SELECT 1").fetchone()
        except psycopg.OperationalError as exc:
            if "refused" in str(exc) and not installed("postgres", "postgresql", paths=("/usr/lib/postgresql",)):
                return CheckResult.skipped("PostgreSQL is not installed and nothing listens")
            return CheckResult.failed(str(exc).strip().splitlines()[0], [("pgsql.ping", 0.0, {})])
        return CheckResult.ok([("pgsql.ping", 1.0, {}), ("pgsql.latency", round(time.monotonic() - start, 6), {})])


class _Mysql(HealthCheck):
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""

    def _status(self, timeout: float, pattern: str) -> dict[str, str] | CheckResult:
        import pymysql

        try:
            conn = pymysql.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                                   connect_timeout=timeout, read_timeout=timeout)
        except pymysql.err.OperationalError as exc:
            refused = exc.args and exc.args[0] == 2003
            if refused and not installed("mysqld", "mariadbd", "mariadb", "mysql"):
                return CheckResult.skipped("MariaDB/MySQL is not installed and nothing listens")
            return CheckResult.failed(f"cannot connect: {exc.args[-1] if exc.args else exc}",
                                      [("mysql.ping", 0.0, {})])
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW GLOBAL STATUS WHERE Variable_name LIKE %s", (pattern,))
                rows = {str(k): str(v) for k, v in cur.fetchall()}
                cur.execute("SHOW GLOBAL VARIABLES WHERE Variable_name IN ('wsrep_on', 'wsrep_provider')")
                rows.update({f"@{k}": str(v) for k, v in cur.fetchall()})
            return rows
        finally:
            conn.close()


class MysqlCheck(_Mysql):
    """MariaDB/MySQL answers: ``mysql.ping``, ``mysql.threads_connected``, ``mysql.uptime``."""

    check: Literal["mysql"]

    def run(self, timeout: float) -> CheckResult:
        st = self._status(timeout, "%")
        if isinstance(st, CheckResult):
            return st
        return CheckResult.ok([("mysql.ping", 1.0, {}),
                               ("mysql.threads_connected", float(st.get("Threads_connected", 0)), {}),
                               ("mysql.uptime", float(st.get("Uptime", 0)), {})])


class GaleraCheck(_Mysql):
    """Galera's own view: ``galera.wsrep_ready``, ``galera.cluster_size``, ``galera.cluster_status_primary``."""

    check: Literal["galera"]

    def run(self, timeout: float) -> CheckResult:
        st = self._status(timeout, "wsrep%")
        if isinstance(st, CheckResult):
            return st
        if "wsrep_ready" not in st:
            return CheckResult.skipped("the server has no wsrep_* status variables: Galera is not built in")
        if st.get("@wsrep_on", "OFF").upper() != "ON" or st.get("@wsrep_provider", "none") == "none":
            return CheckResult.skipped(
                f"Galera is not enabled (wsrep_on={st.get('@wsrep_on')}, wsrep_provider={st.get('@wsrep_provider')})")
        status = st.get("wsrep_cluster_status", "")
        meta = {"wsrep_cluster_status": status}
        values = [("galera.wsrep_ready", float(st["wsrep_ready"].upper() == "ON"), meta),
                  ("galera.cluster_size", float(st.get("wsrep_cluster_size") or 0), meta),
                  ("galera.cluster_status_primary", float(status == "Primary"), meta)]
        if st["wsrep_ready"].upper() != "ON" or status != "Primary":
            return CheckResult.failed(f"wsrep_ready={st['wsrep_ready']}, wsrep_cluster_status={status}", values)
        return CheckResult.ok(values)
