"""The glue that builds the checks and Zabbix components from the settings (called by telemetry.wiring).

Everything it builds takes explicit, typed arguments; only these two
functions read the Runtime. Agent half: the CPU collector,
the passive-check listener, the role templates' scheduler and the
active-check client. Server half: the trapper (sender data, active checks)
and the poller of real Zabbix agents.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from telemetry.component import Component

if TYPE_CHECKING:
    from telemetry.runtime import Runtime

log = logging.getLogger(__name__)


def agent_zabbix_components(runtime: Runtime) -> list[Component]:
    from telemetry.collect.checks.cpu import CpuCollector, CpuSampler
    from telemetry.collect.checks.items import ItemCollector
    from telemetry.collect.checks.scheduler import CheckScheduler
    from telemetry.collect.checks.templates import load_templates
    from telemetry.collect.zabbix.active import ActiveChecksClient
    from telemetry.collect.zabbix.passive import PassiveListener
    from telemetry.collect.zabbix.tls import client_tls

    s = runtime.settings
    zbx, checks = s.sources.zabbix, s.sources.checks
    cpu = CpuCollector()
    items = ItemCollector(s.host, cpu)
    comps: list[Component] = []
    if zbx.enabled and zbx.passive:
        comps.append(PassiveListener(zbx, items))
    if checks.enabled and checks.templates:
        templates, problems = load_templates(checks.templates, checks.template_paths, checks.params)
        for p in problems:
            log.error("checks: %s", p)
        comps.append(CheckScheduler(templates, items, runtime.bus, s.host, interval=checks.interval,
                                    timeout=checks.timeout, bus_format=s.bus.format))
    if zbx.enabled and zbx.active.enabled:
        comps.append(ActiveChecksClient(zbx.active, items, s.host, ",".join(checks.templates),
                                        client_tls(zbx.tls, zbx.tls.connect)))
    return [CpuSampler(cpu), *comps] if comps else []


def server_zabbix_components(runtime: Runtime) -> list[Component]:
    from telemetry.collect.zabbix.poller import PollerSource
    from telemetry.collect.zabbix.trapper import TrapperListener

    s = runtime.settings
    zbx, checks = s.sources.zabbix, s.sources.checks
    comps: list[Component] = []
    if zbx.enabled and zbx.trapper:
        comps.append(TrapperListener(zbx, runtime.bus, bus_format=s.bus.format,
                                     template_paths=checks.template_paths, default_interval=checks.interval))
    if s.sources.zabbix_poller.enabled and s.sources.zabbix_poller.targets:
        comps.append(PollerSource(s.sources.zabbix_poller, runtime.bus, s.bus.format))
    return comps
