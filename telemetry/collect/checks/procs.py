"""Process and socket facts behind ``proc.num`` and ``net.tcp.listen``.

Matching follows ``zabbix_agentd`` on Linux: the name is the kernel's process
name, extended from argv[0] when the kernel cut it at 15 characters (psutil
does that the same way); the user is the effective owner; the command line is
a regular expression searched in the arguments joined by spaces.
"""

from __future__ import annotations

import pwd
import re

import psutil

__all__ = ["proc_num", "process_present", "tcp_listening"]

#: Zabbix's state parameter onto psutil's status names.
_STATES = {
    "run": {psutil.STATUS_RUNNING},
    "sleep": {psutil.STATUS_SLEEPING, psutil.STATUS_IDLE},
    "disk": {psutil.STATUS_DISK_SLEEP},
    "trace": {psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP},
    "zomb": {psutil.STATUS_ZOMBIE},
}


def _uid(user: str) -> int | None:
    """The user's id; None for an unknown user, whom no process can belong to (Zabbix answers 0)."""
    if user.isdigit():
        return int(user)
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def proc_num(name: str = "", user: str = "", state: str = "all", cmdline: str = "") -> int:
    """How many processes match all the given filters (an empty filter matches everything)."""
    if state != "all" and state not in _STATES:
        raise ValueError("Invalid third parameter.")
    uid = _uid(user) if user else None
    if user and uid is None:
        return 0
    try:
        rx = re.compile(cmdline) if cmdline else None
    except re.error as exc:
        raise ValueError(f"Invalid fourth parameter: {exc}") from None
    n = 0
    for p in psutil.process_iter(["name", "cmdline", "uids", "status"]):
        info = p.info
        if name and info["name"] != name:
            continue
        if uid is not None and (info["uids"] is None or info["uids"].effective != uid):
            continue
        if state != "all" and info["status"] not in _STATES[state]:
            continue
        if rx is not None and not rx.search(" ".join(info["cmdline"] or ())):
            continue
        n += 1
    return n


def process_present(name: str) -> bool:
    """True if a process with this name (or this word in its command line) runs."""
    return proc_num(name=name) > 0 or proc_num(cmdline=rf"(^|/|\s){re.escape(name)}(\s|$)") > 0


def tcp_listening(port: int) -> bool:
    """True if any socket listens on ``port`` (IPv4 or IPv6), as /proc/net/tcp{,6} show."""
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path, encoding="ascii") as f:
                next(f, None)
                for line in f:
                    parts = line.split()
                    if len(parts) > 3 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except FileNotFoundError:
            continue
    return False
