"""The bus's topics and the record each carries: the contract docs/bus.md lists.

Topic names here are logical; the bus prefixes them (``bus.topic_prefix``,
``telemetry.`` by default). Samples travel twice: as sources publish them
(``samples``) and after the transformer pipeline (``metered_samples``), which
runs once in its own stage, so the store, the rule engine, the exporters and
the sinks all read the same raw and derived samples.
"""

from __future__ import annotations

from telemetry.models import AlarmTransition, Event, Notification, RawLog, Record, Sample

RAW_LOGS = RawLog.topic
EVENTS = Event.topic
NOTIFICATIONS = Notification.topic
#: Samples as sources publish them: agents, Ceilometer's publishers, the API, notifications.
SAMPLES = Sample.topic
#: Samples after the pipeline: what every consumer of samples reads.
METERED_SAMPLES = "metered_samples"
ALARM_TRANSITIONS = AlarmTransition.topic
#: Records a stage refused, with their reason, original topic and stage as headers.
DEAD_LETTER = "dead_letter"

#: Every topic and the record type on it (None: raw bytes as they arrived, for dead letters).
TOPICS: dict[str, type[Record] | None] = {
    RAW_LOGS: RawLog,
    EVENTS: Event,
    NOTIFICATIONS: Notification,
    SAMPLES: Sample,
    METERED_SAMPLES: Sample,
    ALARM_TRANSITIONS: AlarmTransition,
    DEAD_LETTER: None,
}
