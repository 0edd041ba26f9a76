"""Loaded by the daemon subprocesses of the split-deployment tests (via PYTHONPATH).

It adds the test sink stage to ``telemetry server`` (the real stores are built
on other branches) and applies the mock-Kafka compensation of busenv.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from busenv import patch_aiokafka_for_mock  # noqa: E402

patch_aiokafka_for_mock()
if os.environ.get("BUS_TEST_SINK"):
    import telemetry.daemon  # noqa: E402

    telemetry.daemon.SERVER_BUILDERS.append("bus_sink:sink_components")
