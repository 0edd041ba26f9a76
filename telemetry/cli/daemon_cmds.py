"""run, agent, server and check-config."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
from collections.abc import Coroutine
from typing import Any

import click
from rich.table import Table

from telemetry import __version__, _native
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
    err.print(f"data folder: {s.data_dir}   bus: {rt.bus.describe()}   compiled modules: {_native.why}",
              highlight=False)
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
        _run_until_stopped(daemon.serve_forever(started))
    except KeyboardInterrupt:
        pass
    except (OSError, StartupError) as exc:  # port taken, data folder unwritable, ...
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)
    _exit_now(0)


#: Seconds the stop gives worker threads still busy (a check waiting on DNS, say) before leaving without them.
THREADS_GRACE = 0.5


def _run_until_stopped(main: Coroutine[Any, Any, None]) -> None:
    """``asyncio.run`` without its unbounded wait for the default executor's threads.

    Every component has stopped (stores closed, checkpoints written) when
    ``main`` returns; a blocking call still running in a worker thread (a
    check resolving a host) must not hold the process past the 5 s a stop may
    take, so the threads get ``THREADS_GRACE`` and the process then leaves
    without them (``_exit_now``).
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main)
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
            loop.run_until_complete(loop.shutdown_asyncgens())
            # Not loop.shutdown_default_executor(): on 3.11 it joins the executor's threads in this
            # thread even when the wait for it times out. The threads get a grace period, then are left.
            executor = getattr(loop, "_default_executor", None)
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
                deadline = loop.time() + THREADS_GRACE
                while loop.time() < deadline and any(t.is_alive() for t in getattr(executor, "_threads", ())):
                    loop.run_until_complete(asyncio.sleep(0.05))
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _exit_now(code: int) -> None:
    """Leave, flushing our output first, without joining worker threads still busy (they hold nothing)."""
    busy = [t.name for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
    if busy:
        logging.getLogger(__name__).info("leaving %d worker threads still busy (%s)", len(busy), ", ".join(busy[:5]))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


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
