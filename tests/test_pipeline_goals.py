"""``benchmarks/pipeline.py --goals``: the issue's goals told from one run's figures.

The benchmark itself is a script, not a test (it needs minutes and a quiet machine); what is
checked here is that the table it ends with says "met" exactly at the issue's bounds.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))

from pipeline import GOAL_RUNS, Measured, goals_table


def _measured(lines: int, rate: float, cpu_per_m: float, ratio: float | None = None) -> Measured:
    wall = lines / rate
    return Measured(lines, [("ours", wall, cpu_per_m * lines / 1e6)], (1.0, 1.0), ratio)


def test_each_goal_is_met_at_its_bound_and_missed_past_it() -> None:
    at = goals_table({"memory": _measured(300_000, 40_000, 40.0), "amqp": _measured(100_000, 40_000, 40.0),
                      "kafka": _measured(50_000, 30_000, 60.0, ratio=0.8)})
    assert [met for _, _, met in at] == [True] * 5
    past = goals_table({"memory": _measured(300_000, 39_990, 40.1), "amqp": _measured(100_000, 45_000, 41.0),
                        "kafka": _measured(50_000, 50_000, 30.0, ratio=0.79)})
    assert [(goal.split(": ")[1], figure, met) for goal, figure, met in past] == [
        (">= 40,000 lines/s", "39,990", False), ("<= 40 CPU s per M lines", "40.1", False),
        (">= 40,000 lines/s", "45,000", True), ("<= 40 CPU s per M lines", "41.0", False),
        (">= 0.8x bare aiokafka", "0.79x (50,000 lines/s)", False)]


def test_the_goal_runs_are_the_issues_three_deployments() -> None:
    assert [kind for kind, _ in GOAL_RUNS] == ["memory", "amqp", "kafka"]
    assert all(n >= 50_000 for _, n in GOAL_RUNS)  # past the stages' warm-up (the module's docstring)
