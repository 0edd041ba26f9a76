"""HTTP API: Ceilometer v2, Aodh v2, events, triggers, actions, /metrics and /healthz.

The API package registers every route itself (``app.routers_for``) and
reaches each domain only through its facade (``telemetry.api.services``);
no domain package imports it.
"""
