"""Publish notifications with the real oslo.messaging Notifier (messagingv2), as an OpenStack service does.

Run as a subprocess (``python tests/oslo_publish.py RABBIT_URL < plan.json``,
the plan a JSON list of ``[exchange, oslo message]``): oslo.messaging pulls in
eventlet, which must not share a process with the asyncio tests. Each
exchange is a service's ``control_exchange``; the Notifier makes its own
message_id and timestamp, the rest comes from the message, the ``_context_*``
keys as a real oslo.context RequestContext.
"""

from __future__ import annotations

import json
import sys
import warnings

warnings.simplefilter("ignore")

import oslo_messaging  # noqa: E402
from oslo_config import cfg  # noqa: E402
from oslo_context import context  # noqa: E402

CONTEXT_KEYS = {"request_id", "user_id", "project_id", "domain_id", "global_request_id"}


def main() -> None:
    url = sys.argv[1]
    sent = []
    for exchange, msg in json.load(sys.stdin):
        oslo_messaging.set_transport_defaults(control_exchange=exchange)
        conf = cfg.ConfigOpts()
        conf([], project="telemetry-test")
        transport = oslo_messaging.get_notification_transport(conf, url=url)
        try:
            notifier = oslo_messaging.Notifier(transport, driver="messagingv2", topics=["notifications"],
                                               publisher_id=msg["publisher_id"])
            ctx = {k[len("_context_"):]: v for k, v in msg.items() if k.startswith("_context_")}
            ctxt = context.RequestContext(**{k: v for k, v in ctx.items() if k in CONTEXT_KEYS})
            getattr(notifier, msg["priority"].lower())(ctxt, msg["event_type"], msg["payload"])
            sent.append(msg["event_type"])
        finally:
            transport.cleanup()
    print(json.dumps(sent))


if __name__ == "__main__":
    main()
