"""Loaded by daemon subprocesses in the Kafka tests: see busenv.patch_aiokafka_for_mock."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from busenv import patch_aiokafka_for_mock  # noqa: E402

patch_aiokafka_for_mock()
