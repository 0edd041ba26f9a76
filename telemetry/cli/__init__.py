"""The ``telemetry`` command. Each group of subcommands lives in its own module.

Modules are imported only when one of their commands runs (or for ``--help``),
so ``telemetry run`` does not pay for the import of every query command: start
time is part of the contract (under 5 s).
"""

from __future__ import annotations

import importlib
import os

# pydantic looks for plugins through every installed distribution's entry points when it builds its
# first model: 25 ms, a tenth of a short command's start. Nothing here uses one; setting the variable
# (to "" even) before the start keeps pydantic's own behaviour. Here, not in __main__: the installed
# ``telemetry`` script (and the systemd units) import this module directly.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import click

from telemetry import __version__

#: Command name -> the module that defines it (registered on ``main`` at import).
COMMANDS: dict[str, str] = {
    **{name: "daemon_cmds" for name in ("run", "agent", "server", "check-config")},
    "parse": "parse_cmd",
    **{name: "meter_cmds" for name in ("meter-list", "sample-list", "statistics")},
    "search": "search_cmd",
    **{name: "alarm_cmds" for name in ("alarm-list", "alarm-show", "alarm-create", "alarm-delete",
                                       "alarm-history", "trigger-list", "trigger-ack")},
    **{name: "action_cmds" for name in ("action-log", "dead-letters", "silence-create", "silence-list",
                                        "silence-delete")},
    **{name: "deadletter_cmds" for name in ("dead-letter-list", "dead-letter-show", "dead-letter-replay",
                                            "dead-letter-delete")},
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            importlib.import_module(f"telemetry.cli.{COMMANDS[cmd_name]}")
        return self.commands.get(cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="telemetry")
def main() -> None:
    """OpenStack telemetry: logs, meters and alarms in one daemon.

    Start with `telemetry run` (all-in-one, no configuration needed).
    """
