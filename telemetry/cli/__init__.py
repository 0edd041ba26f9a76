"""The ``telemetry`` command. Each group of subcommands lives in its own module."""

from __future__ import annotations

import click

from telemetry import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="telemetry")
def main() -> None:
    """OpenStack telemetry: logs, meters and alarms in one daemon.

    Start with `telemetry run` (all-in-one, no configuration needed).
    """


def _register() -> None:
    # Imported for their side effect of adding commands to ``main``.
    from telemetry.cli import daemon_cmds  # noqa: F401
    from telemetry.cli import meter_cmds  # noqa: F401
    from telemetry.cli import parse_cmd  # noqa: F401
    from telemetry.cli import search_cmd  # noqa: F401
    from telemetry.cli import action_cmds  # noqa: F401
    from telemetry.cli import alarm_cmds, daemon_cmds  # noqa: F401


_register()
