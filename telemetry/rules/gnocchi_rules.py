"""Aodh's three Gnocchi alarm rules, with Aodh's fields, onto our one threshold rule over samples.

Measures written through our Gnocchi API are samples (``telemetry.gnocchi``):
meter = metric name, resource_id = the resource's original id, metadata =
the resource's attributes. So each Gnocchi rule is a threshold rule:

- ``gnocchi_resources_threshold``: ``metric`` on one ``resource_id``;
- ``gnocchi_aggregation_by_resources_threshold``: ``metric`` on the resources
  its ``query`` (Gnocchi's JSON filter) selects; Heat puts the autoscaling
  group in the instance's ``metering.server_group``, which Ceilometer's
  Gnocchi publisher sends as the ``server_group`` attribute (and its sample
  publishers as ``user_metadata.server_group``: both match);
- ``gnocchi_aggregation_by_metrics_threshold``: the ``metrics`` (ids), which
  the API resolves to their (meter, resource) series before the rule is built.

``granularity`` is the period; ``aggregation_method`` the statistic, a
``rate:`` method taking it over the differences of consecutive samples.
"""

from __future__ import annotations

import json
from typing import Any

from telemetry.rules.models import QueryItem, ThresholdRule

#: Gnocchi aggregation methods onto the statistics a window keeps.
METHODS = {"mean": "avg", "max": "max", "min": "min", "sum": "sum", "count": "count"}
#: The fields each type needs besides Aodh's common ones (threshold, aggregation_method).
REQUIRED = {"gnocchi_resources_threshold": ("metric", "resource_id", "resource_type"),
            "gnocchi_aggregation_by_resources_threshold": ("metric", "query", "resource_type"),
            "gnocchi_aggregation_by_metrics_threshold": ("metrics",)}
_OPS = {"=": "eq", "==": "eq", "eq": "eq", "!=": "ne", "≠": "ne", "ne": "ne", "<": "lt", "lt": "lt",
        "<=": "le", "≤": "le", "le": "le", ">": "gt", "gt": "gt", ">=": "ge", "≥": "ge", "ge": "ge"}


def gnocchi_to_threshold(kind: str, rule: dict[str, Any]) -> ThresholdRule:
    """Aodh's rule dict as a threshold rule; a ValueError names a missing or unsupported field."""
    missing = [f for f in (*REQUIRED.get(kind, ()), "threshold", "aggregation_method") if rule.get(f) in (None, "")]
    if missing:
        raise ValueError(f"{kind}_rule: {', '.join(missing)} must be set")
    method = str(rule["aggregation_method"])
    rate = method.startswith("rate:")
    base = method[5:] if rate else method
    if base not in METHODS:
        raise ValueError(f"{kind}_rule.aggregation_method {method!r} is not supported "
                         f"(one of {', '.join(METHODS)}, or rate: of one)")
    items: list[dict[str, Any]] = []
    series: list[tuple[str, str]] = []
    meter = rule.get("metric") or ""
    if kind == "gnocchi_resources_threshold":
        items.append({"field": "resource_id", "op": "eq", "value": str(rule["resource_id"])})
    elif kind == "gnocchi_aggregation_by_resources_threshold":
        raw = rule["query"]
        if isinstance(raw, str):
            try:
                raw = json.loads(raw) if raw.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"{kind}_rule.query is not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{kind}_rule.query must be a Gnocchi filter object")
        items.extend(gnocchi_filter(raw))
    else:
        if not isinstance(rule["metrics"], list) or not rule["metrics"]:
            raise ValueError(f"{kind}_rule.metrics must be a non-empty list of metric ids")
        series = [(str(m), str(r)) for m, r in rule.get("series") or []]
        if len(series) != len(rule["metrics"]):
            raise ValueError(f"{kind}_rule.metrics: the metrics must exist in this server's Gnocchi API "
                             "(their measures are what the alarm reads)")
        names = {m for m, _ in series}
        if len(names) != 1:
            raise ValueError(f"{kind}_rule.metrics must share one name here (got {', '.join(sorted(names))})")
        meter = series[0][0]
    return ThresholdRule(
        meter_name=meter, query=[QueryItem(**i) for i in items], period=int(rule.get("granularity") or 60),
        comparison_operator=rule.get("comparison_operator") or "eq", threshold=float(rule["threshold"]),
        statistic=METHODS[base], evaluation_periods=int(rule.get("evaluation_periods") or 1), rate=rate,
        series=series,
    )


def gnocchi_filter(q: dict[str, Any]) -> list[dict[str, Any]]:
    """A Gnocchi filter of ANDed comparisons as Aodh query items (``id`` is the resource id)."""
    out: list[dict[str, Any]] = []
    for op, body in q.items():
        if op in ("and", "∧") and isinstance(body, list):
            for sub in body:
                out.extend(gnocchi_filter(sub))
        elif op in _OPS and isinstance(body, dict):
            for field, value in body.items():
                if field in ("id", "original_resource_id"):
                    name = "resource_id"
                elif field in ("resource_id", "project_id", "user_id"):
                    name = field
                else:
                    name = f"metadata.{field}"
                out.append({"field": name, "op": _OPS[op], "value": value})
        else:
            raise ValueError(f"unsupported Gnocchi query operator {op!r} in an alarm (use =, !=, <, <=, >, >=, and)")
    return out
