"""Where a file source's files are: the names its globs match, and rotated copies by content.

A rotated file keeps its content but not its name: logrotate's copy of a
copytruncated file (``app.log.1``, ``app.log-20260302``) often matches no glob,
and a file renamed while the agent was down is only known by its checkpoint.
Both are found by fingerprint (see ``tail``) among the globbed files and the
files of a given folder. Compressed copies are not opened: their content
cannot match a fingerprint, and their lines are what this agent cannot recover.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from fnmatch import fnmatch

from telemetry.collect.tail import fingerprint, stat_key
from telemetry.config.sources import FileSource

__all__ = ["Finder"]

#: Suffixes of compressed rotations (logrotate's compress, compresscmd): never a fingerprint match.
COMPRESSED = (".gz", ".xz", ".bz2", ".zst", ".lz4", ".z", ".Z", ".zip")


class Finder:
    def __init__(self, groups: list[FileSource]) -> None:
        self.groups = groups

    def matches(self) -> list[tuple[str, FileSource, tuple[int, int]]]:
        """Each regular file the globs match now, once: its name, group and (device, inode)."""
        seen: set[str] = set()
        out: list[tuple[str, FileSource, tuple[int, int]]] = []
        for group in self.groups:
            for pattern in group.paths:
                for path in sorted(glob.glob(pattern)):
                    if path in seen or any(fnmatch(path, x) for x in group.exclude):
                        continue
                    try:
                        st = os.stat(path)
                    except OSError:
                        continue
                    if not os.path.isfile(path):
                        continue
                    seen.add(path)
                    out.append((path, group, stat_key(st)))
        return out

    def group_of(self, path: str) -> FileSource | None:
        """The group whose globs match ``path`` (a name a file had when it was read)."""
        for group in self.groups:
            if any(fnmatch(path, p) for p in group.paths) and not any(fnmatch(path, x) for x in group.exclude):
                return group
        return None

    def _candidates(self, dirs: Iterable[str], globs: bool) -> list[str]:
        names = [path for path, _group, _key in self.matches()] if globs else []
        for folder in dirs:
            try:
                entries = sorted(os.scandir(folder or "."), key=lambda d: d.name)
            except OSError:
                continue
            names += [d.path for d in entries if not d.name.endswith(COMPRESSED) and d.is_file()]
        return list(dict.fromkeys(names))

    def find(
        self, fp: str, dirs: Iterable[str], exclude: set[tuple[int, int]], min_size: int = 0, globs: bool = False,
    ) -> tuple[int, str] | None:
        """An open descriptor and the name of a file whose content is ``fp`` (at least ``min_size``
        bytes of it), other than the files in ``exclude``; None if there is none."""
        for path in self._candidates(dirs, globs):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
                if stat_key(st) not in exclude and st.st_size >= min_size and fingerprint(fd) == fp:
                    return fd, path
            except OSError:
                pass
            os.close(fd)
        return None
