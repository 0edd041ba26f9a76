"""The sample pipeline: Ceilometer's ``pipeline.yaml``, run once by the server's pipeline stage.

Sources pick meters (``*``, fnmatch globs, ``!exclusions``) and send them to
sinks; a sink runs its transformers in order and hands the result to its
publishers. Every publisher here means "keep it in our store", so a
Ceilometer ``pipeline.yaml`` with ``gnocchi://`` or ``notifier://`` works
unchanged; samples no source selects are dropped, as in Ceilometer.

Delivery is at-least-once, so the pipeline must be safe to feed the same
sample twice: each sink with transformers remembers, per meter and resource,
the timestamp and id of the last sample it consumed and skips anything not
newer, and derived samples get ids derived from their inputs, so even a
sample re-derived after a crash dedups in the store. Transformer state is
written to ``<data_dir>/pipeline/state.json`` by ``checkpoint()``, which the
pipeline stage calls once the batch's output is on the bus (and ``rollback()``
when it is not): state never runs ahead of what was published.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import yaml
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from telemetry.errors import describe
from telemetry.fsutil import atomic_write
from telemetry.meter.transformers import TRANSFORMERS, Transformer, TransformError
from telemetry.metrics import RECORDS_REJECTED, REGISTRY
from telemetry.models import Sample
from telemetry.timeutil import parse_timestamp, utcnow

log = logging.getLogger(__name__)

STAGE = "meter.pipeline"
#: Publisher schemes that mean "our store" (Ceilometer's storage publishers included).
STORE_PUBLISHERS = ("store", "direct", "database", "gnocchi", "notifier")
#: How long a series' redelivery guard is kept after its last sample.
SEEN_TTL = timedelta(days=7)

PIPELINE_SKIPPED = Counter(
    "telemetry_pipeline_samples_skipped",
    "Samples a transforming sink skipped because it had consumed them (or newer) already",
    ["sink"],
    registry=REGISTRY,
)
PIPELINE_DERIVED = Counter(
    "telemetry_pipeline_samples_derived", "Samples made by transformers, by sink", ["sink"], registry=REGISTRY
)


class PipelineError(ValueError):
    """``pipeline.yaml`` is invalid; the message names the file and the field."""


class _Def(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceDef(_Def):
    name: str
    meters: list[str] = Field(min_length=1)
    sinks: list[str] = Field(min_length=1)
    # Polling keys of Ceilometer's pipeline.yaml, accepted so its files load unchanged.
    interval: int | None = None
    resources: list[str] | None = None
    discovery: list[str] | None = None

    @field_validator("meters")
    @classmethod
    def _filtering(cls, meters: list[str]) -> list[str]:
        # Ceilometer's check_source_filtering rules.
        included = [m for m in meters if m[:1] not in ("!", "*")]
        if included and any(m.startswith("!") for m in meters):
            raise ValueError("both included and excluded meters specified")
        if "*" in meters and included:
            raise ValueError("included meters specified with wildcard")
        return meters

    def supports(self, meter: str) -> bool:
        """Ceilometer's is_supported: deny first, then allow; only denials means allow the rest."""
        if any(fnmatch.fnmatchcase(meter, m[1:]) for m in self.meters if m.startswith("!")):
            return False
        if any(fnmatch.fnmatchcase(meter, m) for m in self.meters if not m.startswith("!")):
            return True
        return all(m.startswith("!") for m in self.meters)


class TransformerDef(_Def):
    name: str
    parameters: dict[str, Any] | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in TRANSFORMERS:
            raise ValueError(f"unknown transformer {v!r}; expected one of {', '.join(sorted(TRANSFORMERS))}")
        return v


class SinkDef(_Def):
    name: str
    transformers: list[TransformerDef] | None = None
    publishers: list[str] = Field(min_length=1)

    @field_validator("publishers")
    @classmethod
    def _publishers(cls, pubs: list[str]) -> list[str]:
        for p in pubs:
            scheme = p.split("://", 1)[0] if "://" in p else p
            if scheme not in STORE_PUBLISHERS:
                raise ValueError(
                    f"publisher {p!r} is not supported in this pipeline; samples go to the store with "
                    f"{', '.join(s + '://' for s in STORE_PUBLISHERS)}"
                )
        return pubs


class PipelineDef(_Def):
    sources: list[SourceDef] = Field(min_length=1)
    sinks: list[SinkDef] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> PipelineDef:
        for kind, items in (("source", self.sources), ("sink", self.sinks)):
            names = [i.name for i in items]
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ValueError(f"duplicated {kind} names: {', '.join(sorted(dup))}")
        sinks = {s.name for s in self.sinks}
        for src in self.sources:
            missing = [s for s in src.sinks if s not in sinks]
            if missing:
                raise ValueError(f"source {src.name!r} sends to undefined sinks: {', '.join(missing)}")
        return self


def load_pipeline(path: str | os.PathLike[str]) -> PipelineDef:
    """Read and validate a pipeline file; every transformer is built once to check its parameters."""
    where = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise PipelineError(f"{where}: cannot read the pipeline: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise PipelineError(f"{where}: invalid YAML: {exc}") from None
    return parse_pipeline(data, where)


def parse_pipeline(data: Any, where: str = "<pipeline>") -> PipelineDef:
    try:
        defn = PipelineDef.model_validate(data)
    except ValidationError as exc:
        raise PipelineError(f"{where}: {describe(exc)}") from None
    for i, sink in enumerate(defn.sinks):
        for j, t in enumerate(sink.transformers or []):
            prefix = f"sinks[{i}] ({sink.name}).transformers[{j}] ({t.name}).parameters"
            try:
                TRANSFORMERS[t.name](t.parameters, tag="check")
            except ValidationError as exc:
                raise PipelineError(f"{where}: {describe(exc, prefix=prefix + '.')}") from None
            except ValueError as exc:
                raise PipelineError(f"{where}: {prefix}: {exc}") from None
    return defn


class _Sink:
    """One sink at run time: its transformer chain and its redelivery guard."""

    def __init__(self, defn: SinkDef) -> None:
        self.name = defn.name
        self.chain: list[Transformer] = [
            TRANSFORMERS[t.name](t.parameters, tag=f"{defn.name}/{i}/{t.name}")
            for i, t in enumerate(defn.transformers or [])
        ]
        self.fingerprint = hashlib.sha256(
            json.dumps(defn.model_dump(mode="json"), sort_keys=True).encode()
        ).hexdigest()[:16]
        #: meter + resource -> (timestamp, message_id) of the last sample consumed.
        self.seen: dict[str, tuple[datetime, str]] = {}

    def _fresh(self, s: Sample) -> bool:
        key = f"{s.counter_name}\x1f{s.resource_id}"
        last = self.seen.get(key)
        if last is not None and (s.timestamp < last[0] or (s.timestamp == last[0] and s.message_id == last[1])):
            return False
        self.seen[key] = (s.timestamp, s.message_id)
        return True

    def _run(self, start: int, samples: list[Sample], now: datetime) -> list[Sample]:
        for t in self.chain[start:]:
            out = []
            for s in samples:
                try:
                    r = t.handle_sample(s, now)
                except TransformError as exc:
                    RECORDS_REJECTED.labels(stage=STAGE, reason="transform_error").inc()
                    log.warning("pipeline sink %s: %s dropped %s/%s: %s",
                                self.name, t.name, s.counter_name, s.resource_id, exc)
                    continue
                if r is not None:
                    out.append(r)
            samples = out
        return samples

    def process(self, samples: list[Sample], now: datetime) -> list[Sample]:
        if not self.chain:
            return samples
        fresh = [s for s in sorted(samples, key=lambda s: s.timestamp) if self._fresh(s)]
        if len(fresh) < len(samples):
            PIPELINE_SKIPPED.labels(sink=self.name).inc(len(samples) - len(fresh))
        out = self._run(0, fresh, now)
        for i, t in enumerate(self.chain):  # Ceilometer's flush: what a transformer releases goes down the rest
            flushed = t.flush(now)
            if flushed:
                out.extend(self._run(i + 1, flushed, now))
        PIPELINE_DERIVED.labels(sink=self.name).inc(len(out))
        return out

    def get_state(self) -> dict[str, Any]:
        newest = max((ts for ts, _ in self.seen.values()), default=None)
        if newest is not None:  # forget series gone quiet, so the guard does not grow forever
            self.seen = {k: v for k, v in self.seen.items() if newest - v[0] <= SEEN_TTL}
        return {
            "fingerprint": self.fingerprint,
            "seen": {k: [ts.isoformat(), mid] for k, (ts, mid) in self.seen.items()},
            "transformers": [t.get_state() for t in self.chain],
        }

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("fingerprint") != self.fingerprint:
            log.info("pipeline sink %s changed since its state was saved; starting it afresh", self.name)
            return
        self.seen = {k: (parse_timestamp(ts), mid) for k, (ts, mid) in state.get("seen", {}).items()}
        for t, st in zip(self.chain, state.get("transformers", [])):
            t.set_state(st)


class SamplePipeline:
    """What the pipeline stage calls: ``process`` per batch, ``checkpoint`` once its output is on the bus."""

    def __init__(self, defn: PipelineDef, state_dir: Path | None = None) -> None:
        self.defn = defn
        self.sinks = {s.name: _Sink(s) for s in defn.sinks}
        self.state_path = state_dir / "state.json" if state_dir is not None else None
        self._dirty = False
        #: The state as of the last checkpoint (JSON), for ``rollback``.
        self._saved: bytes | None = None
        #: meter name -> sinks its sources send it to (meter names are few, samples many).
        self._routes: dict[str, list[str]] = {}
        if self.state_path is not None:
            self._restore()

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], state_dir: Path | None = None) -> SamplePipeline:
        return cls(load_pipeline(path), state_dir)

    def _restore(self) -> None:
        assert self.state_path is not None
        try:
            raw = self.state_path.read_bytes()
        except FileNotFoundError:
            return
        try:
            state = orjson.loads(raw)
            self._saved = raw
            for name, sink_state in state.get("sinks", {}).items():
                if name in self.sinks:
                    self.sinks[name].set_state(sink_state)
        except Exception as exc:  # a corrupt state file costs one interval of rates, never the daemon
            log.error("pipeline state %s is unreadable (%s); transformers start afresh", self.state_path, exc)
            self.sinks = {s.name: _Sink(s) for s in self.defn.sinks}

    def _route(self, meter: str) -> list[str]:
        sinks = self._routes.get(meter)
        if sinks is None:
            sinks = list(dict.fromkeys(k for src in self.defn.sources if src.supports(meter) for k in src.sinks))
            if len(self._routes) < 100_000:
                self._routes[meter] = sinks
        return sinks

    def process(self, samples: Iterable[Sample], now: datetime | None = None) -> list[Sample]:
        """The samples to store for this batch: selected raw ones and derived ones, each id once."""
        now = now or utcnow()
        batch = list(samples)
        per_sink: dict[str, list[Sample]] = {name: [] for name in self.sinks}
        queued: dict[str, set[str]] = {name: set() for name in self.sinks}
        for s in batch:
            for sink in self._route(s.counter_name):
                if s.message_id not in queued[sink]:
                    queued[sink].add(s.message_id)
                    per_sink[sink].append(s)
        out: list[Sample] = []
        emitted: set[str] = set()
        for name, chain in self.sinks.items():
            if not per_sink[name] and not chain.chain:
                continue
            for s in chain.process(per_sink[name], now):
                if s.message_id not in emitted:
                    emitted.add(s.message_id)
                    out.append(s)
        self._dirty = True
        return out

    def checkpoint(self) -> None:
        """Persist transformer state (atomically: a crash leaves the old or the new file).

        Called once the batch's output is durable; ``rollback`` returns here.
        """
        if not self._dirty:
            return
        state = {"version": 1, "sinks": {name: sink.get_state() for name, sink in self.sinks.items()}}
        self._saved = orjson.dumps(state)
        if self.state_path is not None:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.state_path, self._saved)
        self._dirty = False

    def rollback(self) -> None:
        """Forget what ``process`` did since the last checkpoint: the batch failed and comes again.

        Without this the redelivery guard would skip the redelivered samples as
        consumed, and the samples they derive would never be published.
        """
        if not self._dirty:
            return
        self.sinks = {s.name: _Sink(s) for s in self.defn.sinks}
        if self._saved is not None:
            for name, sink_state in orjson.loads(self._saved).get("sinks", {}).items():
                if name in self.sinks:
                    self.sinks[name].set_state(sink_state)
        self._dirty = False
