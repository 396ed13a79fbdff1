"""Append JSON lines to a file with size-based rotation, safe when several processes share the file.

An exclusive ``flock`` on ``<path>.lock`` covers the size check, the rotation (path -> path.1 ->
... -> path.N, oldest dropped) and the append, so replicas on one node never interleave or
double-rotate. (logging's RotatingFileHandler is single-process only.)
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class RotatingJsonl:
    def __init__(self, path: str | os.PathLike[str], max_bytes: int, backup_count: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.path.with_name(self.path.name + ".lock")

    def write_lines(self, lines: list[str]) -> None:
        """Append ``lines``, rotating between lines whenever the next one would overflow ``max_bytes``."""
        if not lines:
            return
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                size = self.path.stat().st_size if self.path.exists() else 0
                chunk: list[bytes] = []
                for line in lines:
                    data = (line + "\n").encode("utf-8")
                    if size and size + len(data) > self.max_bytes:
                        self._append(chunk)
                        chunk, size = [], 0
                        self._rotate()
                    chunk.append(data)
                    size += len(data)
                self._append(chunk)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _append(self, chunk: list[bytes]) -> None:
        if chunk:
            with open(self.path, "ab") as f:
                f.write(b"".join(chunk))

    def _rotate(self) -> None:
        if self.backup_count == 0:
            self.path.unlink(missing_ok=True)
            return
        oldest = self._backup(self.backup_count)
        oldest.unlink(missing_ok=True)
        for i in range(self.backup_count - 1, 0, -1):
            src = self._backup(i)
            if src.exists():
                src.rename(self._backup(i + 1))
        self.path.rename(self._backup(1))

    def _backup(self, i: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{i}")


def rotated_paths(path: str | os.PathLike[str]) -> list[Path]:
    """Existing files of a rotated log, oldest first: path.N, ..., path.1, path."""
    p = Path(path)
    backups = []
    for candidate in p.parent.glob(p.name + ".*"):
        suffix = candidate.name[len(p.name) + 1:]
        if suffix.isdigit():
            backups.append((int(suffix), candidate))
    ordered = [c for _, c in sorted(backups, reverse=True)]
    return ordered + ([p] if p.exists() else [])
