"""One owner at a time for the store and the key file: an exclusive flock beside each.

Both files are rewritten from the memory of the process that holds them (the key ring
rewrites its file whole; the registry and the audit chain cache what they wrote), so a
second writer would lose changes or see a tamper that never happened. The gateway holds
the lock for as long as it runs and records its pid and admin URL in the lock files, so
the CLI can find it and act through it; the CLI holds the same lock while it works on the
files itself. A flock dies with its process, so a lock file left by a killed gateway
blocks nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

from gateway.config import Config, StorageBackend


@dataclass(frozen=True, slots=True)
class Owner:
    """Who holds the lock, as it wrote in the lock file."""

    pid: int
    admin_url: str  # "" until the gateway listens (or for the CLI)


class StorageBusy(Exception):
    """Another process holds the store or the key file."""

    def __init__(self, path: Path, owner: Owner | None) -> None:
        held_by = f"pid {owner.pid}" if owner else "another process"
        super().__init__(f"{path} is in use by {held_by}; stop it first or act through it")
        self.path = path
        self.owner = owner


def lock_paths(config: Config) -> list[Path]:
    """The lock files: ``<store path>.lock`` and ``<key file>.lock``.

    A PostgreSQL store is no file and has many owners by design (`gateway.cluster`):
    only the key file is locked then.
    """
    key_lock = Path(f"{config.privacy.key_file}.lock")
    if config.storage.backend is StorageBackend.POSTGRES:
        return [key_lock]
    return [Path(f"{config.storage.path}.lock"), key_lock]


class StorageLock:
    """The held locks; `release` (or the end of the process) frees them."""

    def __init__(self, files: list[int]) -> None:
        self._files = files

    @classmethod
    def acquire(cls, config: Config) -> StorageLock:
        """Lock every lock file at once or none; raises StorageBusy naming the holder."""
        files: list[int] = []
        try:
            for path in lock_paths(config):
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    owner = _read_owner(fd)
                    os.close(fd)
                    raise StorageBusy(path, owner) from None
                files.append(fd)
        except BaseException:
            for fd in files:
                os.close(fd)
            raise
        lock = cls(files)
        lock.publish("")
        return lock

    def publish(self, admin_url: str) -> None:
        """Record this process and where its admin API answers."""
        record = json.dumps({"pid": os.getpid(), "admin_url": admin_url}).encode()
        for fd in self._files:
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)

    def release(self) -> None:
        """Empty the lock files and unlock them; safe to call twice."""
        files, self._files = self._files, []
        for fd in files:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the only descriptor releases the flock


def _read_owner(fd: int) -> Owner | None:
    """The holder's record, or None while it is still being written."""
    try:
        record = json.loads(os.pread(fd, 4096, 0))
        return Owner(int(record["pid"]), str(record["admin_url"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
