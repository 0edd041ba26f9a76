"""Loaded by the daemon subprocesses of the split-deployment tests (via PYTHONPATH).

It adds the test sink stage to ``telemetry server`` (the real stores are built
on other branches) and applies the mock-Kafka compensation of busenv.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from busenv import patch_aiokafka_for_mock

patch_aiokafka_for_mock()
if os.environ.get("BUS_TEST_SINK"):
    import telemetry.wiring
    from bus_sink import sink_components

    _server = telemetry.wiring.server_components
    telemetry.wiring.server_components = lambda rt: [*_server(rt), *sink_components(rt)]
