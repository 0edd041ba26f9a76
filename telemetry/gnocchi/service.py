"""The Gnocchi facade the API uses: the catalogue's objects, measures in and out, aggregates.

Measures are samples. A measure posted to a metric becomes a gauge sample of
meter ``metric.name`` on the resource's original id (``metric.id`` for a
metric with no resource), with the resource's attributes as its metadata and
``source: gnocchi``; it goes onto the bus like any other input, so the
transformer pipeline, the store and the rule engine see it (a Gnocchi alarm
fires on the measure itself, not a minute later). Its ``message_id`` is
derived from the metric and the timestamp, so a client posting the same
batch again changes nothing. Reads go to the sample store (``measures.py``).
"""

from __future__ import annotations

import math
from fnmatch import fnmatchcase
from datetime import datetime, timezone
from typing import Any

from telemetry.bus import Bus
from telemetry.bus.records import publish_records
from telemetry.gnocchi.catalog import Catalog
from telemetry.gnocchi.filters import compile_filter
from telemetry.gnocchi.measures import Points, Window, keep_last, read_series
from telemetry.gnocchi.models import GnocchiError, Metric, Resource, iso, to_seconds, to_timestamp
from telemetry.gnocchi.objects import Objects
from telemetry.gnocchi.operations import Evaluator, MetricRef, SeriesSet, finite, overlap_filter, parse, references
from telemetry.meter.query import QueryTerm, SampleQuery
from telemetry.meter.store.base import SampleStore
from telemetry.models import Sample, id_of_key

SOURCE = "gnocchi"


def catalog_url(store: SampleStore) -> str:
    """Where the catalogue lives: beside the embedded store's files, or in the store's PostgreSQL."""
    folder = getattr(store, "folder", None)
    if folder is not None:
        return f"sqlite://{folder}/gnocchi.db"
    url = getattr(store, "url", None)
    if isinstance(url, str):
        return url
    raise ValueError(f"the sample store {store.describe()} has no database for the Gnocchi catalogue")


def _like(model: Sample, **typed: Any) -> Sample:
    """``model`` with these fields replaced, without validation or pydantic's copy machinery (a tenth of
    their cost, on the write path of every measure): the values are already of their fields' types."""
    obj = Sample.__new__(Sample)
    setattr_ = object.__setattr__
    setattr_(obj, "__dict__", {**model.__dict__, **typed})
    setattr_(obj, "__pydantic_fields_set__", model.__pydantic_fields_set__)
    extra = model.__pydantic_extra__
    setattr_(obj, "__pydantic_extra__", dict(extra) if extra is not None else None)
    setattr_(obj, "__pydantic_private__", model.__pydantic_private__)
    return obj


class GnocchiService(Objects):
    def __init__(self, catalog: Catalog, store: SampleStore, bus: Bus, fmt: str = "json") -> None:
        super().__init__(catalog)
        self.store = store
        self.bus = bus
        self.fmt = fmt

    # -- writes ------------------------------------------------------------------------------------
    def samples_for(self, m: Metric, measures: Any) -> list[Sample]:
        """Gnocchi's ``[{"timestamp": ..., "value": ...}]`` as samples of metric ``m``; a 400 names the bad one."""
        if not isinstance(measures, list):
            raise GnocchiError(400, "Invalid input: measures must be a list")
        r = self.cat.resources.get(m.resource_id or "")
        attrs = {k: v for k, v in r.attributes.items() if v is not None} if r is not None else {}
        out: list[Sample] = []
        first: Sample | None = None
        for i, item in enumerate(measures):
            if not isinstance(item, dict) or "timestamp" not in item or "value" not in item:
                raise GnocchiError(400, f"Invalid input: measure {i} needs a timestamp and a value")
            value = item["value"]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    raise GnocchiError(400, f"Invalid input: unexpected value {value!r} in measure {i}") from None
            if not math.isfinite(value):
                raise GnocchiError(400, f"Invalid input: measure {i} is not a finite number")
            ts = to_timestamp(item["timestamp"], f"timestamp of measure {i}")
            mid = id_of_key(f"gnocchi\x1f{m.id}\x1f{ts.isoformat()}".encode())
            if first is None:  # validated once; the others differ in typed values only, so copies suffice
                first = Sample(
                    counter_name=m.meter, counter_type="gauge", counter_unit=m.unit or "",
                    counter_volume=float(value), resource_id=r.original_resource_id if r is not None else m.id,
                    project_id=r.project_id if r is not None else None,
                    user_id=r.user_id if r is not None else None, source=SOURCE, timestamp=ts,
                    resource_metadata=attrs, message_id=mid)
                out.append(first)
            else:
                out.append(_like(first, counter_volume=float(value), timestamp=ts, message_id=mid))
        return out

    async def publish(self, samples: list[Sample]) -> None:
        """Returns once the samples are durable (Gnocchi answers 202 once they are in its incoming store)."""
        if samples:
            await publish_records(self.bus, samples, self.fmt, durable=True)

    def batch_resources(self, body: Any, create_metrics: bool, creator: str) -> list[Sample]:
        """``/v1/batch/resources/metrics/measures``: every resource must exist; unknown metrics are created
        when asked, else refused. Checks everything before anything is written."""
        if not isinstance(body, dict):
            raise GnocchiError(400, "Invalid input: expected an object of resource id -> metrics")
        unknown_res, unknown_metrics = [], []
        plan: list[tuple[Resource, str, Any]] = []
        for rid, metrics in body.items():
            if not isinstance(metrics, dict):
                raise GnocchiError(400, f"Invalid input: metrics of resource {rid} must be an object")
            r = self.cat.resources.get(self.resolve(rid, creator))
            if r is None:  # Gnocchi: a missing resource is "unknown" only when metrics may be created
                if create_metrics:
                    unknown_res.append({"resource_id": self.resolve(rid, creator), "original_resource_id": rid})
                else:
                    unknown_metrics += [f"{self.resolve(rid, creator)}/{name}" for name in metrics]
                continue
            for name, spec in metrics.items():
                if name not in r.metrics and not create_metrics:
                    unknown_metrics.append(f"{r.id}/{name}")
                plan.append((r, name, spec))
        if unknown_res:
            raise GnocchiError(400, {"cause": "Unknown resources", "detail": unknown_res})
        if unknown_metrics:
            raise GnocchiError(400, f"Unknown metrics: {', '.join(sorted(unknown_metrics))}")
        samples: list[Sample] = []
        with self.cat.lock:
            for r, name, spec in plan:
                measures = spec.get("measures") if isinstance(spec, dict) else spec
                mid = self.cat.resources[r.id].metrics.get(name)
                if mid is None:
                    opts = {k: spec[k] for k in ("archive_policy_name", "unit") if isinstance(spec, dict) and k in spec}
                    try:
                        mid = self.add_resource_metrics(self.cat.resources[r.id], {name: opts}, creator)[0].id
                    except GnocchiError as exc:
                        if exc.code != 409:
                            raise
                        mid = self.cat.resources[r.id].metrics[name]
                samples += self.samples_for(self.cat.metrics[mid], measures)
        return samples

    def batch_metrics(self, body: Any) -> list[Sample]:
        if not isinstance(body, dict):
            raise GnocchiError(400, "Invalid input: expected an object of metric id -> measures")
        unknown = [mid for mid in body if mid not in self.cat.metrics]
        if unknown:
            raise GnocchiError(400, f"Unknown metrics: {', '.join(sorted(unknown))}")
        samples: list[Sample] = []
        for mid, spec in body.items():
            samples += self.samples_for(self.cat.metrics[mid], spec.get("measures") if isinstance(spec, dict) else spec)
        return samples

    def metric_series(self, ids: list[Any]) -> list[tuple[str, str]]:
        """(meter, resource_id) of each metric as its samples carry them: what an alarm on metric ids watches."""
        out = []
        for mid in ids:
            m = self.metric(str(mid))
            r = self.cat.resources.get(m.resource_id or "")
            out.append((m.meter, r.original_resource_id if r is not None else m.id))
        return out

    # -- reads -------------------------------------------------------------------------------------
    def _selection(self, metrics: list[Metric]) -> tuple[dict[int, int], dict[int, int]]:
        """Series id -> index in ``metrics``, for the store's grouped reads; and per index the newest
        sample time the catalogue of series knows (ms; it may lag, never lead)."""
        wanted: dict[tuple[str, str], int] = {}
        for i, m in enumerate(metrics):
            r = self.cat.resources.get(m.resource_id or "")
            wanted[(m.meter, r.original_resource_id if r is not None else m.id)] = i
        sel: dict[int, int] = {}
        newest: dict[int, int] = {}
        for meter in {k[0] for k in wanted}:
            q = SampleQuery([QueryTerm(field="source", value=SOURCE)], meter=meter)
            if len(wanted) == 1:
                q.add(QueryTerm(field="resource_id", value=next(iter(wanted))[1]))
            for s in self.store.select(q):
                gid = wanted.get((s.meter, s.resource_id))
                if gid is not None:
                    sel[s.id] = gid
                    newest[gid] = max(newest.get(gid, 0), s.last_ts)
        return sel, newest

    def granularities(self, m: Metric) -> list[float]:
        return [d.granularity for d in self.policy(m.archive_policy_name).definition]

    def _check_method(self, m: Metric, method: str, granularity: float) -> None:
        ap = self.policy(m.archive_policy_name)
        if method not in ap.aggregation_methods:
            raise GnocchiError(404, {"cause": "Aggregation method does not exist for this metric",
                                     "detail": {"metric": m.id, "aggregation_method": method}})
        if granularity not in self.granularities(m):
            raise GnocchiError(404, f"Aggregation method '{method}' at granularity '{granularity}' for metric "
                                    f"{m.id} does not exist")

    def series(self, metrics: list[Metric], method: str, granularity: float, start: float | None,
               stop: float | None) -> list[Points]:
        """Each metric's points at one granularity, within its archive's retained window."""
        for m in metrics:
            self._check_method(m, method, granularity)
        sel, newest = self._selection(metrics)
        points = [next(d.points for d in self.policy(m.archive_policy_name).definition
                       if d.granularity == granularity) for m in metrics]
        if sel and len(newest) == len(metrics) and all(newest.values()):
            # Nothing before the archives' windows can be returned: do not read it (a year of minute
            # roll-ups for a day's archive). ``newest`` may lag, which only widens the read.
            earliest = min(newest[i] / 1000 - granularity * points[i] for i in range(len(metrics)))
            start = earliest if start is None else max(start, earliest)
        got = read_series(self.store, sel, method, Window.of(granularity, start, stop)) if sel else {}
        return [keep_last(got.get(i, {}), granularity, n) for i, n in enumerate(points)]

    def measures(self, m: Metric, method: str, granularity: float | None, start: float | None,
                 stop: float | None) -> list[list[Any]]:
        """``GET .../measures``: ``[timestamp, granularity, value]``, coarsest granularity first."""
        grans = [granularity] if granularity is not None else self.granularities(m)
        if granularity is None:
            self._check_method(m, method, grans[0])
        out: list[list[Any]] = []
        for g in sorted(grans, reverse=True):
            pts = self.series([m], method, g, start, stop)[0]
            out += [[iso(datetime.fromtimestamp(t, timezone.utc)), g, v] for t, v in sorted(pts.items())]
        return out

    # -- search and aggregates ---------------------------------------------------------------------
    def search(self, rtype: str, query: Any, creator: str) -> list[Resource]:
        self.rtype(rtype)
        pred = compile_filter(query, lambda v: self.resolve(v, creator))
        return [r for r in self.cat.resources.values() if (rtype == "generic" or r.type == rtype) and pred(r)]

    def aggregates(self, body: Any, params: dict[str, Any], creator: str) -> Any:
        if not isinstance(body, dict) or "operations" not in body:
            raise GnocchiError(400, {"cause": "Invalid input", "reason": "operations is required",
                                     "detail": ["operations"]})
        tree = parse(body["operations"])
        refs = references(tree)
        if not refs:
            raise GnocchiError(400, {"cause": "Invalid operations", "reason": "no metric to read", "detail": []})
        start = to_timestamp(params["start"], "start").timestamp() if params.get("start") else None
        stop = to_timestamp(params["stop"], "stop").timestamp() if params.get("stop") else None
        overlap = float(params.get("needed_overlap") or 100.0)
        fill: Any = params.get("fill")
        if fill not in (None, "null", "dropna"):
            try:
                fill = float(fill)
            except ValueError:
                raise GnocchiError(400, {"cause": "Argument value error", "detail": "fill",
                                         "reason": "Must be a float, 'dropna' or 'null'"}) from None
        gran = to_seconds(params["granularity"], "granularity") if params.get("granularity") else None
        if "search" in body:
            rtype = body.get("resource_type", "generic")
            search = body["search"]
            if isinstance(search, str):
                from telemetry.gnocchi.filters import parse_text

                search = parse_text(search)
            resources = self.search(rtype, search, creator)
            groupby = params.get("groupby") or []
            if groupby:
                groups: dict[tuple[Any, ...], list[Resource]] = {}
                for r in resources:
                    groups.setdefault(tuple(r.field(g) for g in groupby), []).append(r)
                return [{"group": dict(zip(groupby, key)),
                         "measures": self._evaluate(tree, refs, self._by_name(rs, refs), gran, start, stop, overlap,
                                                    fill)}
                        for key, rs in sorted(groups.items(), key=lambda kv: [str(x) for x in kv[0]])]
            return self._evaluate(tree, refs, self._by_name(resources, refs), gran, start, stop, overlap, fill)
        missing = sorted({ref[0] for ref in refs if ref[0] not in self.cat.metrics})
        if missing:
            raise GnocchiError(404, {"cause": "Unknown metrics", "reason": "Provided metrics don't exists",
                                     "detail": missing})
        targets: dict[MetricRef, list[tuple[tuple[str, ...], Metric]]] = {
            ref: [((ref[0], ref[1]), self.cat.metrics[ref[0]])] for ref in refs}
        return self._evaluate(tree, refs, targets, gran, start, stop, overlap, fill)

    def _by_name(self, resources: list[Resource], refs: list[MetricRef]
                 ) -> dict[MetricRef, list[tuple[tuple[str, ...], Metric]]]:
        """Each reference's metrics over the resources; names are shell wildcards, as in Gnocchi."""
        out: dict[MetricRef, list[tuple[tuple[str, ...], Metric]]] = {}
        for pattern, method in refs:
            out[(pattern, method)] = [((r.id, name, method), self.cat.metrics[mid]) for r in resources
                                      for name, mid in r.metrics.items()
                                      if mid in self.cat.metrics and fnmatchcase(name, pattern)]
        if not any(out.values()):
            raise GnocchiError(404, f"Metric {sorted({p for p, _ in refs})} does not exist")
        return out

    def _evaluate(self, tree: Any, refs: list[MetricRef],
                  targets: dict[MetricRef, list[tuple[tuple[str, ...], Metric]]], gran: float | None,
                  start: float | None, stop: float | None, overlap: float, fill: Any) -> dict[str, Any]:
        metrics = [m for lst in targets.values() for _, m in lst]
        if gran is not None:
            grans = [gran]
        else:
            common = set.intersection(*(set(self.granularities(m)) for m in metrics)) if metrics else set()
            if metrics and not common:
                raise GnocchiError(400, {"cause": "Metrics can't being aggregated",
                                         "reason": "No granularity match", "detail": [m.id for m in metrics]})
            grans = sorted(common, reverse=True)
        result: dict[tuple[str, ...], list[list[Any]]] = {}
        for g in grans:
            cache: dict[MetricRef, dict[tuple[str, ...], Points]] = {}
            for ref, lst in targets.items():
                method = ref[1]
                series = self.series([m for _, m in lst], method, g, start, stop) if lst else []
                cache[ref] = {label: pts for (label, _), pts in zip(lst, series)}
            aligned = overlap_filter({k: v for d in cache.values() for k, v in d.items()}, overlap, fill)
            for ref in cache:
                cache[ref] = {k: aligned[k] for k in cache[ref]}
            got = Evaluator(lambda ref, c=cache: c.get(ref, {}), g).run(tree)  # type: ignore[misc]
            if isinstance(got, float):
                raise GnocchiError(400, {"cause": "Invalid operations", "reason": "the result is a number",
                                         "detail": []})
            self._append(result, got, g)
        return {"measures": self._nest(result)}

    @staticmethod
    def _append(result: dict[tuple[str, ...], list[list[Any]]], got: SeriesSet, g: float) -> None:
        for label, pts in got.items():
            rows = result.setdefault(label, [])
            rows += [[iso(datetime.fromtimestamp(t, timezone.utc)), g, finite(v)] for t, v in sorted(pts.items())]

    @staticmethod
    def _nest(result: dict[tuple[str, ...], list[list[Any]]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for label, rows in result.items():
            node = out
            for part in label[:-1]:
                node = node.setdefault(part, {})
            node[label[-1]] = rows
        return out
