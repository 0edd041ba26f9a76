"""Creating, changing and removing catalogue objects with Gnocchi's rules and refusals.

Kept apart from reading measures (``service.py``): this is the part
Ceilometer's publisher and ``ceilometer-upgrade`` exercise (policies, types,
resources appearing and changing), and it never touches the sample store.
"""

from __future__ import annotations

import uuid
from fnmatch import fnmatchcase
from typing import Any

from pydantic import ValidationError

from telemetry.errors import describe
from telemetry.gnocchi.catalog import Catalog
from telemetry.gnocchi.models import (
    GENERIC_FIELDS, ArchivePolicy, ArchivePolicyRule, GnocchiError, Metric, Resource, ResourceType, resource_uuid,
    to_timestamp,
)
from telemetry.timeutil import utcnow


def _valid(model: type[Any], body: Any) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise GnocchiError(400, f"Invalid input: {describe(exc, first=True)}") from None


class Objects:
    """The catalogue's write side; ``creator`` is ``user_id:project_id`` of the caller, as Gnocchi records it."""

    def __init__(self, catalog: Catalog) -> None:
        self.cat = catalog

    # -- archive policies and rules ---------------------------------------------------------
    def policy(self, name: str) -> ArchivePolicy:
        found = self.cat.policies.get(name)
        if found is None:
            raise GnocchiError(404, f"Archive policy {name} does not exist")
        return found

    def create_policy(self, body: Any) -> ArchivePolicy:
        ap: ArchivePolicy = _valid(ArchivePolicy, body)
        with self.cat.lock:
            if ap.name in self.cat.policies:
                raise GnocchiError(409, f"Archive policy {ap.name} already exists")
            self.cat.save([ap])
        return ap

    def update_policy(self, name: str, body: Any) -> ArchivePolicy:
        """Gnocchi lets only the definition change, and only with the same granularities."""
        with self.cat.lock:
            ap = self.policy(name)
            if not isinstance(body, dict) or set(body) - {"definition"}:
                raise GnocchiError(400, "Invalid input: only the definition of an archive policy can be changed")
            new: ArchivePolicy = _valid(ArchivePolicy, {**ap.model_dump(), "definition": body.get("definition")})
            if [d.granularity for d in new.definition] != [d.granularity for d in ap.definition]:
                raise GnocchiError(400, f"Archive policy {name} does not support change: Cannot add or drop "
                                        "granularities")
            self.cat.save([new])
        return new

    def delete_policy(self, name: str) -> None:
        with self.cat.lock:
            ap = self.policy(name)
            if any(m.archive_policy_name == name for m in self.cat.metrics.values()) or any(
                    r.archive_policy_name == name for r in self.cat.rules.values()):
                raise GnocchiError(400, f"Archive policy {name} is still in use")
            self.cat.save([], [ap])

    def rule(self, name: str) -> ArchivePolicyRule:
        found = self.cat.rules.get(name)
        if found is None:
            raise GnocchiError(404, f"Archive policy rule {name} does not exist")
        return found

    def create_rule(self, body: Any) -> ArchivePolicyRule:
        rule: ArchivePolicyRule = _valid(ArchivePolicyRule, body)
        with self.cat.lock:
            self.policy(rule.archive_policy_name)
            if rule.name in self.cat.rules:
                raise GnocchiError(409, f"Archive policy rule {rule.name} already exists")
            self.cat.save([rule])
        return rule

    def rename_rule(self, name: str, body: Any) -> ArchivePolicyRule:
        if not isinstance(body, dict) or set(body) != {"name"}:
            raise GnocchiError(400, "Invalid input: only the name of an archive policy rule can be changed")
        with self.cat.lock:
            old = self.rule(name)
            if body["name"] in self.cat.rules:
                raise GnocchiError(409, f"Archive policy rule {body['name']} already exists")
            new = old.model_copy(update={"name": str(body["name"])})
            self.cat.save([new], [old])
        return new

    def delete_rule(self, name: str) -> None:
        with self.cat.lock:
            self.cat.save([], [self.rule(name)])

    def policy_for(self, metric_name: str | None) -> str:
        """The policy of the longest matching rule (Gnocchi orders them so), as metric creation uses it."""
        if metric_name:
            for r in sorted(self.cat.rules.values(), key=lambda r: len(r.metric_pattern), reverse=True):
                if fnmatchcase(metric_name, r.metric_pattern):
                    return r.archive_policy_name
        raise GnocchiError(400, f"No archive policy name specified and no archive policy rule found matching "
                                f"the metric name {metric_name}")

    # -- resource types -----------------------------------------------------------------------
    def rtype(self, name: str) -> ResourceType:
        found = self.cat.types.get(name)
        if found is None:
            raise GnocchiError(404, f"Resource type {name} does not exist")
        return found

    def create_type(self, body: Any) -> ResourceType:
        if isinstance(body, dict) and isinstance(body.get("attributes"), dict):
            clash = set(body["attributes"]) & set(GENERIC_FIELDS)
            if clash:
                raise GnocchiError(400, f"Invalid input: attribute name {sorted(clash)[0]} is reserved")
        t: ResourceType = _valid(ResourceType, body)
        with self.cat.lock:
            if t.name in self.cat.types:
                raise GnocchiError(409, f"Resource type {t.name} already exists")
            self.cat.save([t])
        return t

    def patch_type(self, name: str, ops: Any) -> ResourceType:
        """A JSON patch of ``/attributes/<name>`` adds and removes (what ceilometer-upgrade sends)."""
        with self.cat.lock:
            t = self.rtype(name)
            if name == "generic":
                raise GnocchiError(400, "Invalid input: the generic resource type cannot be changed")
            if not isinstance(ops, list) or any(not isinstance(o, dict) or o.get("op") not in ("add", "remove")
                                                or not str(o.get("path", "")).startswith("/attributes/")
                                                for o in ops):
                raise GnocchiError(400, "Invalid input: only add and remove of /attributes/<name> are supported")
            attributes = {k: a.render() for k, a in t.attributes.items()}
            for o in ops:
                attr = o["path"].split("/", 2)[2]
                if o["op"] == "add":
                    attributes[attr] = o.get("value")
                elif attributes.pop(attr, None) is None:
                    raise GnocchiError(400, f"Invalid input: attribute {attr} does not exist")
            new: ResourceType = _valid(ResourceType, {"name": name, "attributes": attributes})
            fills = {o["path"].split("/")[2]: (o.get("value") or {}).get("options", {}).get("fill")
                     for o in ops if o["op"] == "add"}
            touched = []
            for r in self.cat.resources.values():
                if r.type != name:
                    continue
                attrs = {k: v for k, v in r.attributes.items() if k in new.attributes}
                for k, fill in fills.items():
                    if k not in r.attributes:
                        if fill is None and new.attributes[k].required:
                            raise GnocchiError(400, f"Invalid input: required attribute {k} needs options.fill "
                                                    "for the resources that exist")
                        attrs[k] = fill
                touched.append(r.model_copy(update={"attributes": attrs}))
            self.cat.save([new, *touched])
        return new

    def delete_type(self, name: str) -> None:
        with self.cat.lock:
            t = self.rtype(name)
            if name == "generic":
                raise GnocchiError(400, "Resource type generic cannot be deleted")
            if any(r.type == name for r in self.cat.resources.values()):
                raise GnocchiError(400, f"Resource type {name} is still in use")
            self.cat.save([], [t])

    # -- resources and metrics ----------------------------------------------------------------
    def resolve(self, rid: str, creator: str) -> str:
        """The stored id for what a client calls a resource: its UUID, or the text it was created with."""
        try:
            key = resource_uuid(rid, creator)
        except GnocchiError:
            key = rid
        if key in self.cat.resources:
            return key
        return self.cat.by_original.get(rid, key)

    def resource(self, rtype: str, rid: str, creator: str) -> Resource:
        self.rtype(rtype)
        r = self.cat.resources.get(self.resolve(rid, creator))
        if r is None or (rtype != "generic" and r.type != rtype):
            raise GnocchiError(404, f"Resource {rid} does not exist")
        return r

    def _attributes(self, t: ResourceType, body: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        unknown = set(body) - set(t.attributes) - set(GENERIC_FIELDS)
        if unknown:
            raise GnocchiError(400, f"Invalid input: extra keys not allowed @ data['{sorted(unknown)[0]}']")
        out = dict(old or {})
        for name, attr in t.attributes.items():
            if name in body:
                out[name] = attr.check(name, body[name])
            elif old is None:
                out[name] = attr.check(name, None)
        return out

    def new_metric(self, body: Any, creator: str, resource_id: str | None = None,
                   name: str | None = None) -> Metric:
        if not isinstance(body, dict):
            raise GnocchiError(400, "Invalid input: a metric is an object")
        extra = set(body) - {"name", "unit", "archive_policy_name", "resource_id"}
        if extra:
            raise GnocchiError(400, f"Invalid input: extra keys not allowed @ data['{sorted(extra)[0]}']")
        name = name if name is not None else body.get("name")
        policy = body.get("archive_policy_name") or self.policy_for(name)
        self.policy(policy)
        unit = body.get("unit")
        if unit is not None and (not isinstance(unit, str) or len(unit) > 31):
            raise GnocchiError(400, "Invalid input: length of value must be at most 31 for dictionary value "
                                    "@ data['unit']")
        return Metric(id=str(uuid.uuid4()), name=name, unit=unit, archive_policy_name=policy,
                      resource_id=resource_id, creator=creator)

    def create_resource(self, rtype: str, body: Any, creator: str) -> Resource:
        t = self.rtype(rtype)
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise GnocchiError(400, "Invalid input: required key not provided @ data['id']")
        original = body["id"]
        rid = resource_uuid(original, creator)
        now = utcnow()
        attrs = self._attributes(t, body, None)
        started = to_timestamp(body["started_at"]) if body.get("started_at") else now
        ended = to_timestamp(body["ended_at"]) if body.get("ended_at") else None
        metrics_in = body.get("metrics") or {}
        if not isinstance(metrics_in, dict):
            raise GnocchiError(400, "Invalid input: metrics must be an object")
        with self.cat.lock:
            if rid in self.cat.resources:
                raise GnocchiError(409, f"Resource {rid} already exists")
            metrics = self._attach(metrics_in, rid, creator)
            r = Resource(id=rid, original_resource_id=original, type=rtype, project_id=body.get("project_id"),
                         user_id=body.get("user_id"), creator=creator, started_at=started, ended_at=ended,
                         revision_start=now, attributes=attrs, metrics={m.name or "": m.id for m in metrics})
            self.cat.save([r, *metrics])
        return r

    def _attach(self, metrics_in: dict[str, Any], rid: str, creator: str) -> list[Metric]:
        """``{name: metric id | {archive_policy_name, unit}}`` as metrics of resource ``rid``."""
        out = []
        for name, spec in metrics_in.items():
            if isinstance(spec, str):
                m = self.cat.metrics.get(spec)
                if m is None:
                    raise GnocchiError(400, f"Metric {spec} does not exist")
                if m.resource_id not in (None, rid):
                    raise GnocchiError(400, f"Metric {spec} is already attached to a resource")
                out.append(m.model_copy(update={"resource_id": rid, "name": name}))
            else:
                out.append(self.new_metric(spec or {}, creator, rid, name))
        return out

    def update_resource(self, rtype: str, rid: str, body: Any, creator: str) -> Resource:
        if not isinstance(body, dict):
            raise GnocchiError(400, "Invalid input: a resource update is an object")
        with self.cat.lock:
            r = self.resource(rtype, rid, creator)
            t = self.rtype(r.type)
            if {"id", "type", "original_resource_id", "creator"} & set(body):
                raise GnocchiError(400, "Invalid input: id, type, original_resource_id and creator cannot change")
            changes: dict[str, Any] = {"attributes": self._attributes(t, body, r.attributes),
                                       "revision_start": utcnow()}
            for key in ("project_id", "user_id"):
                if key in body:
                    changes[key] = body[key]
            for key in ("started_at", "ended_at"):
                if key in body:
                    changes[key] = to_timestamp(body[key]) if body[key] else None
            docs: list[Any] = []
            if "metrics" in body:
                kept = {n: i for n, i in r.metrics.items() if n in (body["metrics"] or {})}
                new = self._attach({n: s for n, s in (body["metrics"] or {}).items() if n not in kept}, r.id, creator)
                changes["metrics"] = {**kept, **{m.name or "": m.id for m in new}}
                docs += new
            updated = r.model_copy(update=changes)
            if updated.model_dump(exclude={"revision_start"}) == r.model_dump(exclude={"revision_start"}):
                return r  # Gnocchi starts no new revision for a no-op update
            self.cat.save([updated, *docs])
        return updated

    def delete_resource(self, rtype: str, rid: str, creator: str) -> None:
        with self.cat.lock:
            r = self.resource(rtype, rid, creator)
            self.cat.save([], [r, *(self.cat.metrics[m] for m in r.metrics.values() if m in self.cat.metrics)])

    def metric(self, mid: str) -> Metric:
        found = self.cat.metrics.get(mid)
        if found is None:
            raise GnocchiError(404, f"Metric {mid} does not exist")
        return found

    def create_metric(self, body: Any, creator: str) -> Metric:
        rid = body.get("resource_id") if isinstance(body, dict) else None
        with self.cat.lock:
            if rid is not None:
                r = self.resource("generic", rid, creator)
                name = body.get("name")
                if not name:
                    raise GnocchiError(400, "Invalid input: a metric attached to a resource needs a name")
                return self.add_resource_metrics(r, {name: {k: v for k, v in body.items()
                                                            if k not in ("resource_id", "name")}}, creator)[0]
            m = self.new_metric(body, creator)
            self.cat.save([m])
        return m

    def add_resource_metrics(self, r: Resource, body: Any, creator: str) -> list[Metric]:
        if not isinstance(body, dict):
            raise GnocchiError(400, "Invalid input: metrics are an object of name -> definition")
        with self.cat.lock:
            for name in body:
                if name in r.metrics:
                    raise GnocchiError(409, f"Named metric {name} already exists")
            made = self._attach(body, r.id, creator)
            metrics = {**r.metrics, **{m.name or "": m.id for m in made}}
            self.cat.save([r.model_copy(update={"metrics": metrics}), *made])
        return made

    def delete_metric(self, mid: str) -> None:
        with self.cat.lock:
            m = self.metric(mid)
            docs = []
            r = self.cat.resources.get(m.resource_id or "")
            if r is not None:
                docs.append(r.model_copy(update={"metrics": {n: i for n, i in r.metrics.items() if i != mid}}))
            self.cat.save(docs, [m])
