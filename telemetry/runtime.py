"""What the running daemon's components share, each service under a typed name.

One object instead of a string-keyed dict: a component that needs the sample
store asks for ``runtime.sample_store`` and mypy knows what it gets, and a
service that this mode does not run is ``None`` rather than a missing key.
The wiring module (``telemetry.wiring``) is the only place that fills these
fields; components and the API only read them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from telemetry.bus import Bus
from telemetry.component import Component
from telemetry.config import Settings

if TYPE_CHECKING:  # the services' modules import heavy dependencies; only their types are needed here
    from telemetry.actions.service import ActionsService
    from telemetry.cluster.membership import Membership
    from telemetry.collect.agent import AgentPipeline
    from telemetry.collect.ceilometer import CeilometerHttpInput
    from telemetry.deadletters.service import DeadLetterService
    from telemetry.events.backend import EventBackend
    from telemetry.gnocchi.service import GnocchiService
    from telemetry.meter.pipeline import SamplePipeline
    from telemetry.meter.store.base import SampleStore
    from telemetry.rules.service import RulesService

Mode = Literal["run", "agent", "server"]


@dataclass
class Runtime:
    """Settings, the bus, the data folder, and the services this mode runs."""

    settings: Settings
    mode: Mode
    bus: Bus
    data_dir: Path
    started_at: float = field(default_factory=time.time)
    #: Every component, in start order (the order ``telemetry.wiring`` lists them in).
    components: list[Component] = field(default_factory=list)

    # Services, set by telemetry.wiring when the mode and the configuration run them.
    event_store: EventBackend | None = None
    sample_store: SampleStore | None = None
    sample_pipeline: SamplePipeline | None = None
    rules: RulesService | None = None
    actions: ActionsService | None = None
    agent: AgentPipeline | None = None
    ceilometer_http: CeilometerHttpInput | None = None
    dead_letters: DeadLetterService | None = None
    #: The Gnocchi API's catalogue and measures, over the sample store (servers only).
    gnocchi: GnocchiService | None = None
    #: This server's membership of a cluster (the ``cluster`` section), else None.
    cluster: Membership | None = None
    #: ``http://host:port`` once the API listens (the port may have been picked by the kernel).
    api_address: str | None = None
