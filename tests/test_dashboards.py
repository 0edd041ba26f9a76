"""Every query of every shipped dashboard and Prometheus rule names a metric the daemon exposes.

Metric names are read out of the PromQL by a real parser (promql-parser),
not by searching text, and checked against what the daemon's registry
holds, the meter families the exporter makes from the meters we collect
(host figures, collectors/meters.yaml), the alarm-state families, and the
rules' own recorded names.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import yaml

import telemetry
from telemetry.collect.host import collect_host_samples
from telemetry.content import content_path
from telemetry.exporter.meters import family_name
from telemetry.metrics import REGISTRY

#: Grafana's own variables in range selectors, replaced by a duration before parsing.
GRAFANA_RANGES = re.compile(r"\$__(rate_interval|interval|range)|\$\{__(rate_interval|interval|range)\}")


def exposed_names() -> set[str]:
    for mod in pkgutil.walk_packages(telemetry.__path__, "telemetry."):
        if not mod.name.endswith("__main__"):
            importlib.import_module(mod.name)  # every module that defines a metric registers it
    names: set[str] = set()
    for family in REGISTRY.collect():
        suffixes = {
            "counter": ["_total"],
            "histogram": ["_bucket", "_sum", "_count"],
            "summary": ["_sum", "_count"],
            "info": ["_info"],
        }.get(family.type, [""])
        names.update(family.name + s for s in suffixes)
    meters = [
        (s.counter_name, s.counter_unit, s.counter_type.value)
        for s in collect_host_samples(socket.gethostname())
    ]
    defs = yaml.safe_load((content_path("collectors") / "meters.yaml").read_text())["metric"]
    meters += [(m["name"], m["unit"], m["type"]) for m in defs]
    for name, unit, kind in meters:
        family = family_name(name, unit)[0]
        names.add(family + ("_total" if kind == "cumulative" else ""))
    names.update({"telemetry_alarm_state", "telemetry_rules_evaluations_total"})
    return names


def metric_names(expr: str) -> Iterator[str]:
    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, promql_parser.VectorSelector):
            yield node.name
            return
        for attr in ("lhs", "rhs", "expr", "vector_selector", "param"):
            child = getattr(node, attr, None)
            if child is not None:
                yield from walk(child)
        for arg in getattr(node, "args", None) or []:
            yield from walk(arg)

    yield from walk(promql_parser.parse(GRAFANA_RANGES.sub("5m", expr)))


def dashboard_queries() -> Iterator[tuple[str, str]]:
    for f in sorted(content_path("dashboards").glob("*.json")):
        dash = json.loads(f.read_text())
        assert dash["title"] and dash["panels"], f.name
        assert any(i["type"] == "datasource" and i["pluginId"] == "prometheus" for i in dash["__inputs"]), (
            f.name
        )
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource", f.name
        for p in dash["panels"]:
            if p["type"] != "row":
                assert p["datasource"]["uid"] == "${datasource}", (f.name, p["title"])
            for t in p.get("targets", []):
                yield f"{f.name}: {p['title']}", t["expr"]
        for v in variables.values():
            if v["type"] == "query":
                q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
                m = re.fullmatch(r"label_values\((\w+),\s*\w+\)", q)
                assert m, (f.name, q)
                yield f"{f.name}: variable {v['name']}", m.group(1)


def rule_queries() -> Iterator[tuple[str, str]]:
    for f in sorted(content_path("dashboards").glob("*.yml")):
        for group in yaml.safe_load(f.read_text())["groups"]:
            for rule in group["rules"]:
                yield f"{f.name}: {rule.get('alert') or rule.get('record')}", rule["expr"]


def recorded_names() -> set[str]:
    return {
        r["record"]
        for f in content_path("dashboards").glob("*.yml")
        for g in yaml.safe_load(f.read_text())["groups"]
        for r in g["rules"]
        if "record" in r
    }


def test_every_dashboard_and_rule_query_names_an_exposed_metric() -> None:
    known = exposed_names() | recorded_names()
    checked = 0
    for where, expr in [*dashboard_queries(), *rule_queries()]:
        names = list(metric_names(expr))
        assert names, (where, expr)
        for name in names:
            assert name in known, f"{where}: {name} is not a metric the daemon exposes ({expr})"
            checked += 1
    assert checked > 100


def test_metric_check_catches_a_wrong_name() -> None:
    known = exposed_names()
    names = list(
        metric_names(
            'sum by (stage) (rate(telemetry_stage_records_inn_total{stage=~"$stage"}[$__rate_interval]))'
        )
    )
    assert names == ["telemetry_stage_records_inn_total"] and names[0] not in known
    assert "telemetry_meter_hardware_cpu_util_percent" in known
    assert "telemetry_meter_hardware_network_incoming_bytes_total" in known


def test_dashboards_ship_in_the_wheel_layout() -> None:
    assert {p.name for p in Path(content_path("dashboards")).glob("*.json")} >= {
        "telemetry-overview.json",
        "telemetry-pipeline.json",
        "telemetry-cloud.json",
        "telemetry-alarms.json",
    }
