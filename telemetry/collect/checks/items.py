"""Zabbix agent item keys, evaluated natively (psutil and /proc), with Zabbix's semantics.

Each key answers what ``zabbix_agentd`` answers on Linux for the same key, so
templates, triggers and habits carry over; tests compare the two on this
machine. A key we cannot evaluate raises ``NotSupported`` with the reason,
which the passive listener sends as ``ZBX_NOTSUPPORTED\\0reason``.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable
import orjson
import psutil

from telemetry.collect.checks.cpu import CPU_FIELDS, CpuCollector, read_proc_stat
from telemetry.collect.checks.keys import ItemKey, KeyError_, parse_key
from telemetry.collect.checks.procs import proc_num, tcp_listening

__all__ = ["ItemCollector", "NotSupported", "Value", "format_value"]

Value = int | float | str


class NotSupported(Exception):
    """The key cannot be evaluated here; the message is the reason Zabbix users see."""


def format_value(v: Value) -> str:
    """As the agent writes values: floats with six decimals, integers plain."""
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float):
        return f"{v:.6f}"
    return str(v)


def _meminfo(path: str = "/proc/meminfo") -> dict[str, int]:
    out: dict[str, int] = {}
    with open(path, encoding="ascii") as f:
        for line in f:
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                out[name] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
    return out


def _net_dev(path: str = "/proc/net/dev") -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    with open(path, encoding="ascii") as f:
        for line in f.readlines()[2:]:
            name, _, rest = line.partition(":")
            out[name.strip()] = [int(x) for x in rest.split()]
    return out


def _statvfs(path: str) -> os.statvfs_result:
    try:
        return os.statvfs(path)
    except OSError as exc:
        raise NotSupported(f"Cannot obtain filesystem information: [{exc.errno}] {exc.strerror}") from None


def _mounts(path: str = "/proc/mounts") -> list[tuple[str, str]]:
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                out.append((parts[1].replace("\\040", " "), parts[2]))
    return out


#: POSIX ``cksum``: CRC-32 polynomial 0x04C11DB7, most significant bit first, then the length.
_CRC_TABLE = []
for _i in range(256):
    _c = _i << 24
    for _ in range(8):
        _c = ((_c << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if _c & 0x80000000 else (_c << 1) & 0xFFFFFFFF
    _CRC_TABLE.append(_c)


def posix_cksum(path: str) -> int:
    crc, length, table = 0, 0, _CRC_TABLE
    with open(path, "rb") as f:
        while chunk := f.read(1 << 16):
            length += len(chunk)
            for b in chunk:
                crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ b]
    while length:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ (length & 0xFF)]
        length >>= 8
    return ~crc & 0xFFFFFFFF


_IF_IN = ("bytes", "packets", "errors", "dropped", "overruns", "frame", "compressed", "multicast")
_IF_OUT = ("bytes", "packets", "errors", "dropped", "overruns", "collisions", "carrier", "compressed")


class ItemCollector:
    """Evaluates item keys for this host; shared by the passive listener, active checks and the scheduler."""

    def __init__(self, hostname: str, cpu: CpuCollector | None = None) -> None:
        self.hostname = hostname
        self.cpu = cpu or CpuCollector()
        self._keys: dict[str, Callable[[ItemKey], Value]] = {
            "agent.ping": lambda k: 1,
            "agent.hostname": lambda k: self.hostname,
            "agent.version": lambda k: "6.0.0",
            "system.hostname": lambda k: socket.gethostname(),
            "system.cpu.load": self._cpu_load,
            "system.cpu.util": self._cpu_util,
            "system.cpu.num": self._cpu_num,
            "system.cpu.switches": lambda k: self._stat_counter("ctxt"),
            "system.cpu.intr": lambda k: self._stat_counter("intr"),
            "system.uptime": lambda k: int(time.time() - self._stat_counter("btime")),
            "system.boottime": lambda k: self._stat_counter("btime"),
            "vm.memory.size": self._memory,
            "vfs.fs.size": self._fs_size,
            "vfs.fs.inode": self._fs_inode,
            "vfs.fs.discovery": self._fs_discovery,
            "vfs.file.cksum": self._file_cksum,
            "vfs.file.size": self._file_size,
            "vfs.file.exists": lambda k: int(os.path.isfile(self._need(k, 0, "file name"))),
            "net.if.in": lambda k: self._net_if(k, _IF_IN, 0),
            "net.if.out": lambda k: self._net_if(k, _IF_OUT, 8),
            "net.if.discovery": lambda k: orjson.dumps([{"{#IFNAME}": n} for n in _net_dev()]).decode(),
            "proc.num": self._proc_num,
            "net.tcp.port": self._tcp_port,
            "net.tcp.listen": self._tcp_listen,
        }

    @property
    def keys(self) -> list[str]:
        return sorted(self._keys)

    def supports(self, name: str) -> bool:
        return name in self._keys

    def get(self, key: str | ItemKey) -> Value:
        """The key's value, or NotSupported with the reason."""
        try:
            k = parse_key(key) if isinstance(key, str) else key
        except KeyError_ as exc:
            raise NotSupported(f"Invalid item key format: {exc}") from None
        fn = self._keys.get(k.name)
        if fn is None:
            raise NotSupported("Unsupported item key.")
        try:
            return fn(k)
        except NotSupported:
            raise
        except (ValueError, KeyError_) as exc:
            raise NotSupported(str(exc)) from None
        except OSError as exc:
            raise NotSupported(f"Cannot obtain information: [{exc.errno}] {exc.strerror}") from None

    # -- helpers -----------------------------------------------------------------
    @staticmethod
    def _need(k: ItemKey, i: int, what: str) -> str:
        v = k.param(i)
        if not v:
            raise NotSupported(f"Invalid {['first', 'second', 'third', 'fourth'][i]} parameter: {what} is required.")
        return v

    @staticmethod
    def _max_params(k: ItemKey, n: int) -> None:
        if len(k.params) > n:
            raise NotSupported("Too many parameters.")

    @staticmethod
    def _stat_counter(name: str) -> int:
        _, other = read_proc_stat()
        if name not in other:
            raise NotSupported(f"Cannot find a line with \"{name}\" in /proc/stat.")
        return other[name]

    # -- system.cpu.* ------------------------------------------------------------
    def _cpu_load(self, k: ItemKey) -> Value:
        self._max_params(k, 2)
        cpu, mode = k.param(0, "all"), k.param(1, "avg1")
        loads = dict(zip(("avg1", "avg5", "avg15"), os.getloadavg(), strict=True))
        if mode not in loads:
            raise NotSupported("Invalid second parameter.")
        if cpu == "all":
            return loads[mode]
        if cpu == "percpu":
            return loads[mode] / (psutil.cpu_count() or 1)
        raise NotSupported("Invalid first parameter.")

    def _cpu_util(self, k: ItemKey) -> Value:
        self._max_params(k, 4)
        cpu = k.param(0, "all")
        name = "cpu" if cpu == "all" else f"cpu{cpu}" if cpu.isdigit() else None
        if name is None:
            raise NotSupported("Invalid first parameter.")
        field = k.param(1, "user")
        if field not in CPU_FIELDS:
            raise NotSupported("Invalid second parameter.")
        return self.cpu.util(name, field, k.param(2, "avg1"))

    @staticmethod
    def _cpu_num(k: ItemKey) -> Value:
        mode = k.param(0, "online")
        if mode == "online":
            return os.sysconf("SC_NPROCESSORS_ONLN")
        if mode == "max":
            return os.sysconf("SC_NPROCESSORS_CONF")
        raise NotSupported("Invalid first parameter.")

    # -- memory ----------------------------------------------------------------
    @staticmethod
    def _memory(k: ItemKey) -> Value:
        ItemCollector._max_params(k, 1)
        mode = k.param(0, "total")
        m = _meminfo()
        total, free = m["MemTotal"], m["MemFree"]
        available = m.get("MemAvailable", free + m.get("Buffers", 0) + m.get("Cached", 0))
        modes: dict[str, Callable[[], Value]] = {
            "total": lambda: total, "free": lambda: free, "buffers": lambda: m.get("Buffers", 0),
            "cached": lambda: m.get("Cached", 0), "used": lambda: total - free,
            "pused": lambda: 100.0 * (total - free) / total if total else 0.0,
            "available": lambda: available,
            "pavailable": lambda: 100.0 * available / total if total else 0.0,
            "active": lambda: m["Active"], "inactive": lambda: m["Inactive"], "slab": lambda: m["Slab"],
        }
        if mode == "shared":
            raise NotSupported("Supported for Linux 2.4 only.")
        if mode not in modes:
            raise NotSupported("Invalid first parameter.")
        return modes[mode]()

    # -- file systems ------------------------------------------------------------
    def _fs_size(self, k: ItemKey) -> Value:
        self._max_params(k, 2)
        st = _statvfs(self._need(k, 0, "file system"))
        mode = k.param(1, "total")
        total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        base = st.f_blocks - st.f_bfree + st.f_bavail
        pfree = 100.0 * st.f_bavail / base if base else 0.0
        modes: dict[str, Value] = {"total": total, "free": free, "used": used, "pfree": pfree,
                                   "pused": 100.0 - pfree if base else 0.0}
        if mode not in modes:
            raise NotSupported("Invalid second parameter.")
        return modes[mode]

    def _fs_inode(self, k: ItemKey) -> Value:
        self._max_params(k, 2)
        st = _statvfs(self._need(k, 0, "file system"))
        mode = k.param(1, "total")
        used = st.f_files - st.f_ffree
        base = used + st.f_favail
        if mode in ("pfree", "pused") and not base:
            raise NotSupported("Cannot calculate percentage because total is zero.")
        modes: dict[str, Callable[[], Value]] = {
            "total": lambda: st.f_files, "free": lambda: st.f_favail, "used": lambda: used,
            "pfree": lambda: 100.0 * st.f_favail / base, "pused": lambda: 100.0 - 100.0 * st.f_favail / base,
        }
        if mode not in modes:
            raise NotSupported("Invalid second parameter.")
        return modes[mode]()

    @staticmethod
    def _fs_discovery(k: ItemKey) -> Value:
        return orjson.dumps([{"{#FSNAME}": p, "{#FSTYPE}": t} for p, t in _mounts()]).decode()

    def _file_cksum(self, k: ItemKey) -> Value:
        self._max_params(k, 2)
        path, mode = self._need(k, 0, "file name"), k.param(1, "crc32")
        if mode == "crc32":
            return posix_cksum(path)
        if mode in ("md5", "sha256"):
            h = hashlib.new(mode)
            with open(path, "rb") as f:
                while chunk := f.read(1 << 16):
                    h.update(chunk)
            return h.hexdigest()
        raise NotSupported("Invalid second parameter.")

    def _file_size(self, k: ItemKey) -> Value:
        self._max_params(k, 2)
        path, mode = self._need(k, 0, "file name"), k.param(1, "bytes")
        if mode == "bytes":
            return os.stat(path).st_size
        if mode == "lines":
            with open(path, "rb") as f:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 16), b""))
        raise NotSupported("Invalid second parameter.")

    # -- network and processes ---------------------------------------------------
    def _net_if(self, k: ItemKey, modes: tuple[str, ...], offset: int) -> Value:
        self._max_params(k, 2)
        name, mode = self._need(k, 0, "interface"), k.param(1, "bytes")
        counters = _net_dev().get(name)
        if counters is None:
            raise NotSupported("Cannot find information for this network interface in /proc/net/dev.")
        if mode not in modes:
            raise NotSupported("Invalid second parameter.")
        return counters[offset + modes.index(mode)]

    def _proc_num(self, k: ItemKey) -> Value:
        self._max_params(k, 5)
        return proc_num(k.param(0), k.param(1), k.param(2, "all"), k.param(3))

    def _tcp_port(self, k: ItemKey) -> Value:
        self._max_params(k, 2)
        host, port = k.param(0, "127.0.0.1"), self._need(k, 1, "port")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise NotSupported("Invalid second parameter.")
        try:
            with socket.create_connection((host, int(port)), timeout=3):
                return 1
        except OSError:
            return 0

    def _tcp_listen(self, k: ItemKey) -> Value:
        self._max_params(k, 1)
        port = self._need(k, 0, "port")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise NotSupported("Invalid first parameter.")
        return int(tcp_listening(int(port)))

