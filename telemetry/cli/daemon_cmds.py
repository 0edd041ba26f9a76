"""run, agent, server and check-config."""

from __future__ import annotations

import asyncio
import json
import sys

import click
from rich.table import Table

from telemetry import __version__
from telemetry.cli import main
from telemetry.cli.common import config_option, err, load_or_exit, out, report_config_error
from telemetry.config import ConfigError, Settings, load_config, printable
from telemetry.runtime import Mode, Runtime


def _banner(rt: Runtime) -> None:
    s: Settings = rt.settings
    table = Table(title=f"telemetry {__version__} — {rt.mode} on {s.host}", title_justify="left", show_edge=False)
    table.add_column("component")
    table.add_column("state")
    table.add_column("where / what", overflow="fold")
    for c in rt.components:
        h = c.health()
        state = h.pop("state")
        colour = "green" if state == "running" else "red"
        detail = ", ".join(f"{k}={v}" for k, v in h.items())
        table.add_row(c.name, f"[{colour}]{state}[/]", detail)
    err.print(table)
    err.print(f"data folder: {s.data_dir}   bus: {rt.bus.describe()}", highlight=False)
    if rt.api_address:
        a = rt.api_address
        err.print(f"API: {a}  (health {a}/healthz, metrics {a}/metrics)", highlight=False)
    err.print("Ctrl-C or SIGTERM stops it.", style="dim")


def _serve(settings: Settings, mode: Mode, quiet: bool) -> None:
    from telemetry.daemon import Daemon, StartupError
    from telemetry.gctune import tune_for_daemon
    from telemetry.logsetup import setup_logging

    def started(rt: Runtime) -> None:
        tune_for_daemon()  # after startup, so what it built is frozen
        if not quiet:
            _banner(rt)

    setup_logging(settings.logging.level, settings.logging.format)
    daemon = Daemon(settings, mode)
    try:
        asyncio.run(daemon.serve_forever(started))
    except KeyboardInterrupt:
        pass
    except (OSError, StartupError) as exc:  # port taken, data folder unwritable, ...
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)


def _print_config(settings: Settings) -> None:
    out.print_json(json.dumps(printable(settings)))


def _daemon_command(mode: Mode, summary: str, config_required: bool) -> None:
    @click.option("--print-config", is_flag=True, help="Print the effective configuration (secrets masked) and exit.")
    @click.option("--quiet", is_flag=True, help="Do not print the start banner (-q means --query in the query commands).")
    @config_option
    def command(config_path: str | None, print_config: bool, quiet: bool) -> None:
        if config_required and not config_path:
            raise click.UsageError(f"telemetry {mode} needs -c FILE (see collectors/ for per-role examples)")
        settings = load_or_exit(config_path)
        if print_config:
            _print_config(settings)
            return
        _serve(settings, mode, quiet)

    command.__doc__ = summary
    main.command(mode)(command)


_daemon_command(
    "run", "All-in-one: agent and server in one process over the in-memory bus, embedded stores.", False
)
_daemon_command("agent", "Node agent: tail logs, collect host figures, ship to the bus.", True)
_daemon_command("server", "Central server: parse, store, evaluate rules, serve the API.", True)


@main.command("check-config")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--print-config", is_flag=True, help="Also print the effective configuration (secrets masked).")
def check_config(file: str, print_config: bool) -> None:
    """Validate FILE; every error names its field path and the value found.

    A meters.yaml, pipeline.yaml or rules file is recognised and checked with
    the loader the daemon uses for it. Values still holding the examples'
    CHANGE_ME are flagged.
    """
    from pathlib import Path

    from telemetry.cli.filekinds import detect
    from telemetry.config.loader import placeholders, read_yaml

    try:
        data = read_yaml(Path(file))
    except ConfigError as exc:
        report_config_error(exc)
        sys.exit(2)
    kind = detect(data)
    if kind is not None:
        problems, summary = kind.check(Path(file))
        err.print(f"{file} is a {kind.name}, not a daemon configuration ({kind.used_by}).", highlight=False)
        for p in problems:
            err.print(f"  [yellow]refused[/]: {p}", highlight=False)
        if problems:
            sys.exit(2)
        err.print(f"[green]ok[/]: {summary}", highlight=False)
        return
    try:
        settings = load_config(file)
    except ConfigError as exc:
        report_config_error(exc)
        sys.exit(2)
    left = placeholders(data)
    if left:
        report_config_error(ConfigError(file, left))
        sys.exit(2)
    err.print(f"[green]ok[/]: {file} is valid", highlight=False)
    if print_config:
        _print_config(settings)
