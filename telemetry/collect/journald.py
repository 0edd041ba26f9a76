"""The systemd journal as a source: one RawLog per journal entry, resumed by cursor.

Reading: ``journalctl -o json --all --follow --after-cursor C``. The Python
bindings (``systemd``, ``cysystemd``) need libsystemd's headers to build and
follow the host's journal format only as far as their own libsystemd does;
journalctl is on every systemd host, reads every format its journal writes,
and its cursor options give the exact resume the agent needs. ``--all`` keeps
fields over 4 KiB (a long traceback), which JSON output otherwise nulls.

Delivery is the files' at-least-once: the cursor of the last entry of a batch
is that batch's mark, saved in the checkpoints only once the bus acknowledged
the batch, so a restart re-reads from the last acknowledged entry. Record ids
derive from the entry's cursor: an entry re-read after a kill keeps its id and
is deduplicated downstream.

A service's traceback sent as one entry (oslo's journal handler, anything that
logs a message with newlines) stays one record, its lines split. The entry's
fields map onto the record: the component from ``_SYSTEMD_UNIT`` or
``SYSLOG_IDENTIFIER`` (``nova-compute.service``, ``devstack@n-cpu.service``,
``openstack-nova-compute.service`` -> ``nova``), ``level`` from ``PRIORITY``,
``pid`` from ``_PID``, ``host`` from ``_HOSTNAME``, ``timestamp`` from
``__REALTIME_TIMESTAMP``. Bad output (a line that is not JSON, an entry too
large to hold) is counted in ``telemetry_agent_journald_errors_total`` and
skipped; journalctl exiting is logged, counted and restarted with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from telemetry.collect import agent_metrics as m
from telemetry.collect.batcher import Batcher, Mark, Value
from telemetry.collect.checkpoints import Checkpoints
from telemetry.component import Component
from telemetry.config.sources import AgentConfig, JournaldSource
from telemetry.fastcodec import raw_log
from telemetry.models import RawLog, derived_id, iso_utc
from telemetry.parse.normalise import SERVICES, syslog_severity_level
from telemetry.timeutil import utcnow

log = logging.getLogger(__name__)

__all__ = ["JournalReader", "component_of", "journal_key"]

#: devstack's unit names (``devstack@n-cpu.service``): the short prefix of each project.
DEVSTACK = {"n": "nova", "q": "neutron", "c": "cinder", "g": "glance", "h": "heat", "s": "swift", "o": "octavia",
            "m": "manila", "a": "aodh", "ir": "ironic", "placement": "placement", "keystone": "keystone"}
#: Other daemons an OpenStack node runs, by the first part of their unit or program name, named as
#: the file sources name them (``sources.files`` defaults).
NEIGHBOURS = {"rabbitmq": "rabbitmq", "mariadb": "mysql", "mysqld": "mysql", "mysql": "mysql",
              "libvirtd": "libvirt", "virtqemud": "libvirt", "ovs": "openvswitch", "ovsdb": "openvswitch",
              "openvswitch": "openvswitch", "apache2": "apache2", "httpd": "httpd"}
_WORD = re.compile(r"[-@_.]")

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: Bytes read from journalctl at a time.
READ_BYTES = 256 << 10
#: journalctl restarts wait this long at first, doubling up to RESTART_MAX.
RESTART_MIN, RESTART_MAX = 1.0, 30.0


def component_of(unit: str | None, identifier: str | None) -> str:
    """The OpenStack project (or neighbour daemon) a journal entry comes from."""
    for name in (unit, identifier):
        if not name:
            continue
        name = name.removesuffix(".service")
        if name.startswith("devstack@"):
            short = name[len("devstack@"):]
            head = short.split("-", 1)[0]
            if head in DEVSTACK:
                return DEVSTACK[head]
            name = short
        head = _WORD.split(name.removeprefix("openstack-"), 1)[0]
        if head in SERVICES:
            return head
        if head in NEIGHBOURS:
            return NEIGHBOURS[head]
    return (identifier or (unit or "").removesuffix(".service")) or ""


def journal_key(cfg: JournaldSource) -> str:
    """The checkpoint key of a journal source: what it reads."""
    return "journald:" + (cfg.directory or ",".join(cfg.files) or "system")


def _text(value: Any) -> tuple[str | None, list[str]]:
    """A field's text: JSON gives a string, a list of bytes (not UTF-8) or a list of values (repeated)."""
    if isinstance(value, str):
        return value, []
    if isinstance(value, list) and value and all(isinstance(b, int) for b in value):
        raw = bytes(value)
        try:
            return raw.decode("utf-8"), []
        except UnicodeDecodeError:
            return raw.decode("utf-8", "replace"), ["invalid_utf8"]
    if isinstance(value, list) and value:  # the field was sent more than once: the last one
        return _text(value[-1])
    return None, []


class JournalReader(Component):
    name = "source.journald"

    def __init__(
        self, cfg: JournaldSource, agent: AgentConfig, host: str, batcher: Batcher, checkpoints: Checkpoints,
        spooled: dict[str, Mark],
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.agent = agent
        self.host = host
        self.batcher = batcher
        self.key = journal_key(cfg)
        sp = spooled.get(self.key)
        #: The cursor of the last entry handed to the batcher: where journalctl resumes if it exits.
        self.cursor: str | None = sp.cursor if sp and sp.cursor else checkpoints.cursors.get(self.key)
        self.fields = {k: v for k, v in cfg.fields.items() if k not in ("type", "component")}
        self.type = cfg.fields.get("type", "journald")
        self.entries = 0
        self.proc: asyncio.subprocess.Process | None = None

    def command(self) -> list[str]:
        cfg = self.cfg
        cmd = [cfg.journalctl, "--output=json", "--all", "--follow", "--no-pager"]
        if cfg.directory:
            cmd.append(f"--directory={cfg.directory}")
        cmd += [f"--file={f}" for f in cfg.files]
        if self.cursor:
            cmd += [f"--after-cursor={self.cursor}", "--no-tail"]
        elif cfg.since == "now":
            cmd.append("--lines=0")
        else:
            cmd.append("--no-tail")
        return cmd + list(cfg.matches)

    async def start(self) -> None:
        if shutil.which(self.cfg.journalctl) is None:
            raise RuntimeError(f"sources.journald: {self.cfg.journalctl!r} not found; install systemd's journalctl "
                               "or set sources.journald.journalctl")
        self.spawn(self._run, "journalctl")

    async def _run(self) -> None:
        backoff = RESTART_MIN
        while True:
            started = time.monotonic()
            code, err = await self._follow()
            m.JOURNALD_ERRORS.labels(reason="journalctl_exit").inc()
            log.warning("journalctl exited with %s%s; starting it again in %.0fs", code,
                        f": {err}" if err else "", backoff)
            await asyncio.sleep(backoff)
            backoff = RESTART_MIN if time.monotonic() - started > 60 else min(backoff * 2, RESTART_MAX)

    async def _follow(self) -> tuple[int | None, str]:
        """Run journalctl until it exits; ship every entry it prints."""
        self.proc = proc = await asyncio.create_subprocess_exec(
            *self.command(), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        errors = asyncio.ensure_future(proc.stderr.read(64 << 10))
        partial = b""
        skipping = False  # inside an entry over the size limit: drop up to its newline
        limit = 2 * self.agent.max_event_bytes + (64 << 10)
        try:
            while True:
                chunk = await proc.stdout.read(READ_BYTES)
                if not chunk:
                    break
                m.BYTES_READ.labels(source="journald").inc(len(chunk))
                data = chunk
                if skipping:  # the rest of an entry too large to hold
                    nl = data.find(b"\n")
                    if nl < 0:
                        continue
                    data, skipping = data[nl + 1:], False
                lines = (partial + data).split(b"\n")
                partial = lines.pop()
                if len(partial) > limit:
                    m.JOURNALD_ERRORS.labels(reason="too_large").inc()
                    log.warning("journal entry after cursor %s is over %d bytes: skipped", self.cursor, limit)
                    partial, skipping = b"", True
                if lines:
                    await self._ship(lines)
                if len(chunk) < READ_BYTES:
                    await self.batcher.flush()  # journalctl has nothing more for now: no batch_wait
            code = await proc.wait()
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 2.0)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            self.proc = None
        with contextlib.suppress(Exception):
            err = (await asyncio.wait_for(errors, 1.0)).decode("utf-8", "replace").strip()
            return code, err
        return code, ""

    def record(self, entry: dict[str, Any], now: datetime) -> RawLog | None:
        """The record of one journal entry; None for an entry with no message."""
        text, tags = _text(entry.get("MESSAGE"))
        if text is None:
            return None
        lines = text.rstrip("\n").split("\n")
        lines, cut = self._bounded(lines)
        unit, _ = _text(entry.get("_SYSTEMD_UNIT"))
        ident, _ = _text(entry.get("SYSLOG_IDENTIFIER"))
        host, _ = _text(entry.get("_HOSTNAME"))
        extra: dict[str, Any] = dict(self.fields)
        priority, _ = _text(entry.get("PRIORITY"))
        if priority and priority.isdigit():
            extra["priority"] = int(priority)
            extra["level"] = syslog_severity_level(priority)
        pid, _ = _text(entry.get("_PID") or entry.get("SYSLOG_PID"))
        if pid and pid.isdigit():
            extra["pid"] = int(pid)
        stamp, _ = _text(entry.get("__REALTIME_TIMESTAMP"))
        if stamp and stamp.isdigit():
            extra["timestamp"] = iso_utc(_EPOCH + timedelta(microseconds=int(stamp)))
        if unit:
            extra["unit"] = unit
        if ident:
            extra["syslog_identifier"] = ident
        source = unit or ident or ""
        return raw_log(
            id=derived_id("journald", entry["__CURSOR"]), host=host or self.host, path=f"journald:{source}",
            component=self.cfg.fields.get("component") or component_of(unit, ident), type=self.type, offset=0,
            inode=0, lines=lines, read_at=now, tags=self.cfg.tags + tags + cut, extra=extra,
        )

    def _bounded(self, lines: list[str]) -> tuple[list[str], list[str]]:
        """The entry's lines within the agent's line and event limits, and the tags saying what was cut."""
        cfg, tags = self.agent, []
        if any(len(line) > cfg.max_line_bytes for line in lines):  # characters: at least as many bytes
            lines = [line if len(line.encode()) <= cfg.max_line_bytes else
                     line.encode()[: cfg.max_line_bytes].decode("utf-8", "ignore") for line in lines]
            tags.append("truncated")
        if len(lines) > cfg.max_event_lines or sum(map(len, lines)) > cfg.max_event_bytes:
            kept, size = [], 0
            for line in lines[: cfg.max_event_lines]:
                size += len(line)
                if size > cfg.max_event_bytes:
                    break
                kept.append(line)
            lines = kept or lines[:1]
            tags.append("multiline_truncated")
        return lines, tags

    async def _ship(self, raw_lines: list[bytes]) -> None:
        now = utcnow()
        values: list[Value] = []
        hosts: list[bytes] = []
        sizes: list[int] = []
        cursors: list[str] = []
        for raw in raw_lines:
            if not raw.strip():
                continue
            try:
                entry = orjson.loads(raw)
                cursor = entry["__CURSOR"]
                rec = self.record(entry, now)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                m.JOURNALD_ERRORS.labels(reason="bad_entry").inc()
                log.warning("journalctl printed an entry that cannot be read (%s: %s): %.200r",
                            type(exc).__name__, exc, raw)
                continue
            self.cursor = cursor
            if rec is None:
                continue
            values.append(rec if self.batcher.objects else rec.to_json())
            hosts.append(rec.host.encode())
            sizes.append(sum(map(len, rec.lines)))
            cursors.append(cursor)
        if not values:
            return
        self.entries += len(values)
        m.LINES_READ.labels(source="journald").inc(len(values))
        await self.batcher.add_many(values, sizes, hosts, self.key, lambda i: Mark(0, cursor=cursors[i]))

    async def stop(self) -> None:
        proc = self.proc
        await self.cancel_tasks()
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()

    def details(self) -> dict[str, Any]:
        return {"journal": self.key.removeprefix("journald:"), "entries": self.entries}
