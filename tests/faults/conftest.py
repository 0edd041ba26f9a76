"""Fault tests print one table of what each fault cost at the end of the session."""

from __future__ import annotations

from typing import Any

import pytest
from faults.support import Tally, format_table

_ROWS: list[Tally] = []


@pytest.fixture
def fault_table() -> list[Tally]:
    """Append a ``Tally`` here and it is printed in the session's fault table."""
    return _ROWS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _ROWS:
        terminalreporter.write_sep("=", "fault table")
        terminalreporter.write_line(format_table(_ROWS))
