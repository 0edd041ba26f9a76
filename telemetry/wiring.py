"""What each mode runs, in order: the one place that builds components and fills the Runtime.

Components start in the order listed here and stop in reverse, so stores
open before the stages that write to them and close after them; stages run
before the sources that feed them, so nothing a source publishes waits for
a consumer that is not there yet; the API comes last, once every service it
routes to exists, and goes first on the way down.

    server:  sample store, events stage (its store), dead letters, pipeline,
             meter, parse, actions, rules, exporters, sinks, Ceilometer UDP input
    agent:   shipper, files, journal, syslog, notifications, host figures
    all:     the API (/healthz and /metrics on an agent; everything on a server)

``run`` is server then agent in one process over the in-memory bus.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from telemetry.component import Component, StartupError
from telemetry.runtime import Runtime

if TYPE_CHECKING:
    from telemetry.actions.dispatch import ActionDispatcher
    from telemetry.cluster.membership import Membership
    from telemetry.events.backend import EventBackend
    from telemetry.meter.pipeline import SamplePipeline

log = logging.getLogger(__name__)


def event_store(rt: Runtime) -> EventBackend:
    """The event store ``store.events.url`` names: embedded SQLite day files, or PostgreSQL shared by servers."""
    import psycopg

    from telemetry.events.backend import open_event_store

    s = rt.settings
    try:
        return open_event_store(s.store.events.url, rt.data_dir, ttl=s.store.ttl.events or s.store.ttl.default,
                                min_free_disk=s.store.min_free_disk, writer=s.store.events.writer)
    except psycopg.Error as exc:
        raise StartupError(f"store.events.url: cannot open the event store in PostgreSQL ({exc}); "
                           "check the address, that the database exists and that this user may create tables "
                           "in it") from exc


def server_components(rt: Runtime) -> list[Component]:
    """Stores, stages, rules and actions, and the server-side Ceilometer inputs."""
    from telemetry.actions.dispatch import ActionDispatcher
    from telemetry.actions.service import ActionsService
    from telemetry.collect.ceilometer import CeilometerHttpInput, CeilometerUdpSource
    from telemetry.deadletters.service import DeadLetterService
    from telemetry.deadletters.stage import DeadLetterStage
    from telemetry.deadletters.store import DeadLetterStore
    from telemetry.events.query import set_default_operator
    from telemetry.events.stage import EventStage
    from telemetry.gnocchi.component import GnocchiCatalogComponent, open_gnocchi
    from telemetry.meter.pipeline_stage import PipelineStage
    from telemetry.meter.stage import MeterStage
    from telemetry.meter.store import open_store
    from telemetry.meter.store_component import SampleStoreComponent
    from telemetry.parse.stage import ParseStage
    from telemetry.rules.service import RulesService
    from telemetry.rules.stage import RulesStage

    s = rt.settings
    comps: list[Component] = []
    membership = cluster_membership(rt)
    if membership is not None:
        comps.append(membership)
    rt.sample_store = open_store(s.store.samples.url, rt.data_dir, s.store)
    comps.append(SampleStoreComponent(s.store, rt.sample_store))
    rt.gnocchi = open_gnocchi(rt, rt.sample_store)
    comps.append(GnocchiCatalogComponent(rt.gnocchi.cat))
    set_default_operator(s.store.events.default_operator)  # searches and alarm queries read alike
    rt.event_store = event_store(rt)
    comps.append(EventStage(rt, rt.event_store))
    letters = DeadLetterStore(rt.data_dir / "dead_letters", ttl=s.store.dead_letters.ttl)
    rt.dead_letters = DeadLetterService(letters, rt.bus)
    comps.append(DeadLetterStage(rt, letters))
    rt.sample_pipeline = load_sample_pipeline(rt)
    comps.append(PipelineStage(rt, rt.sample_pipeline))
    comps.append(MeterStage(rt, rt.sample_store))
    if s.parse.enabled:
        comps.append(ParseStage(rt))
    if s.actions.enabled:
        dispatcher = shared_dispatcher(rt) if membership is not None else ActionDispatcher(rt)
        rt.actions = ActionsService(dispatcher)
        comps.append(dispatcher)
    if s.rules.enabled:
        rules = RulesStage(rt, membership, s.cluster.url if membership is not None else None)
        rt.rules = RulesService(rules)
        comps.append(rules)
    # Outputs read what the stages above publish; the alarm gauges start from the engine's states.
    from telemetry.exporter import exporter_components
    from telemetry.sinks import sink_components

    comps += exporter_components(rt)
    comps += sink_components(rt)
    if s.sources.ceilometer.http:
        rt.ceilometer_http = CeilometerHttpInput(rt)
    if s.sources.ceilometer.enabled:
        comps.append(CeilometerUdpSource(rt))
    from telemetry.collect.zabbix.builders import server_zabbix_components

    comps += server_zabbix_components(rt)  # the Zabbix trapper and the poller of Zabbix agents
    return comps


def cluster_membership(rt: Runtime) -> Membership | None:
    """This server's registration among the servers sharing rules and actions state (``cluster``)."""
    cfg = rt.settings.cluster
    if not cfg.enabled:
        return None
    from telemetry.cluster.membership import Membership

    rt.cluster = Membership(cfg, cfg.member or rt.settings.host, {"pid": os.getpid()})
    return rt.cluster


def shared_dispatcher(rt: Runtime) -> ActionDispatcher:
    """The actions stage on the cluster's shared outbox, its claims lasting ``cluster.delivery_lease``."""
    from telemetry.actions.dispatch import ActionDispatcher
    from telemetry.actions.outbox_pg import PostgresOutbox

    cfg = rt.settings.cluster
    assert cfg.url is not None
    return ActionDispatcher(rt, PostgresOutbox(cfg.url), cfg.delivery_lease)


def load_sample_pipeline(rt: Runtime) -> SamplePipeline | None:
    """The configured pipeline.yaml (or the shipped one); None when ``pipeline.enabled`` is false."""
    from telemetry.content import content_path
    from telemetry.meter.pipeline import PipelineError, SamplePipeline

    cfg = rt.settings.pipeline
    if not cfg.enabled:
        return None
    path = Path(cfg.file) if cfg.file else content_path("collectors") / "pipeline.yaml"
    try:
        pipeline = SamplePipeline.from_file(path, rt.data_dir / "pipeline")
    except PipelineError as exc:
        raise StartupError(str(exc)) from None
    log.info("sample pipeline loaded from %s", path)
    return pipeline


def agent_components(rt: Runtime) -> list[Component]:
    """The node's sources and the shipper they share."""
    s, sources = rt.settings, rt.settings.sources
    comps: list[Component] = []
    journald = sources.journald if sources.journald.enabled else None
    if sources.files or sources.syslog.enabled or journald:
        from telemetry.collect.agent import AgentPipeline

        # Records as objects for a parse stage in this process (the all-in-one): it parses them itself,
        # or hands their plain values to its workers (cheaper to send than JSON is to decode there).
        # Anywhere else the JSON template is the cheaper thing to build.
        objects = rt.mode == "run" and rt.bus.in_process and s.parse.enabled
        rt.agent = AgentPipeline(sources.agent, rt.data_dir, rt.bus, s.bus.format, objects=objects)
        comps.append(rt.agent)
        if sources.files:
            from telemetry.collect.files import FilesSource

            comps.append(FilesSource(list(sources.files), sources.agent, s.host, rt.agent.batcher,
                                     rt.agent.checkpoints, rt.agent.spooled))
        if journald:
            from telemetry.collect.journald import JournalReader

            comps.append(JournalReader(journald, sources.agent, s.host, rt.agent.batcher, rt.agent.checkpoints,
                                       rt.agent.spooled))
        if sources.syslog.enabled:
            from telemetry.collect.syslog import SyslogServer

            comps.append(SyslogServer(rt, rt.agent.batcher))
    if sources.notifications.enabled:
        from telemetry.collect.notifications import NotificationListener

        comps.append(NotificationListener(rt))
    if sources.host_metrics.enabled:
        from telemetry.collect.host import HostMetricsSource

        comps.append(HostMetricsSource(rt))
    from telemetry.collect.zabbix.builders import agent_zabbix_components

    comps += agent_zabbix_components(rt)  # passive checks, role-template checks, active checks
    return comps


def api_components(rt: Runtime) -> list[Component]:
    if not rt.settings.api.enabled:
        return []
    from telemetry.api.app import ApiComponent

    return [ApiComponent(rt)]


def build(rt: Runtime) -> list[Component]:
    """Every component of ``rt.mode``, in start order."""
    comps: list[Component] = []
    if rt.mode in ("server", "run"):
        comps += server_components(rt)
    if rt.mode in ("agent", "run"):
        comps += agent_components(rt)
    comps += api_components(rt)
    return comps
