"""Match one event against a Kibana-style query: ``level:ERROR AND component:nova``.

Log and event alarms use the event store's query language, so an alarm fires
on exactly the events ``telemetry search`` shows for the same query. The
grammar lives in ``telemetry.events.query``; its in-memory evaluation in
``telemetry.events.predicate``. This module keeps the names the rule engine
imports.
"""

from __future__ import annotations

from telemetry.events.predicate import Predicate as Matcher
from telemetry.events.predicate import compile_predicate, lookup
from telemetry.events.query import QueryError as QuerySyntaxError

__all__ = ["Matcher", "QuerySyntaxError", "compile_query", "lookup"]


def compile_query(text: str) -> Matcher:
    """A predicate on an event dict; raises QuerySyntaxError naming the position."""
    return compile_predicate(text)
