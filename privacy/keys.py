"""Per-tenant pseudonymisation keys, kept in a JSON file outside the database.

Pseudonyms are HMACs under these keys, so destroying a key makes every pseudonym made with
it unlinkable to a number (crypto-shredding). That only holds if the key cannot be made
again: keys are random (`secrets.token_bytes`), never derived from a master secret, and they
live in this file, not in the database or its backups.

Each tenant (the GDPR controller of its recipients' data) has its own keys, so pseudonyms of
one tenant can never be joined with another's:

* a *registry key*, for the consent / opt-out registry, kept as long as the tenant exists
  (opt-outs must stay matchable);
* one *epoch key* per period (`epoch_of`), for pseudonymising old traffic; destroying the
  key of a period ends all linkability of that period's rows.

File format (keys in standard base64)::

    {"version": 1,
     "tenants": {"acme": {"registry_key": "<32 bytes>", "epochs": {"2026-11": "<32 bytes>"}}}}

One process owns the file: every change rewrites it whole from memory, so two processes
changing the same file would lose each other's keys.
"""

from __future__ import annotations

import base64
import binascii
import glob
import json
import os
import re
import secrets
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, overload

from privacy.pseudonyms import forget_keys

KEY_BYTES: Final = 32
_VERSION: Final = 1
EPOCH_LABEL: Final = re.compile(r"[0-9]{4}-(?:0[1-9]|1[0-2])")
_MONTHS_PER_EPOCH: Final = (1, 2, 3, 4, 6, 12)  # divisors of 12: every year splits evenly

Epochs = dict[str, dict[str, bytes]]


class KeyFileError(Exception):
    """The key file cannot be used: unsafe mode, damaged content, or an I/O error.

    Messages name the file and the problem, never key material.
    """


def epoch_of(timestamp: float, months_per_epoch: int = 1) -> str:
    """The label of the epoch holding `timestamp` (seconds since 1970, UTC).

    An epoch is a run of `months_per_epoch` calendar months (UTC) aligned to January,
    labelled by its first month: with 3, October-December 2026 is "2026-10". Labels sort
    in time order as strings.
    """
    if months_per_epoch not in _MONTHS_PER_EPOCH:
        raise ValueError("months_per_epoch must divide 12 (1, 2, 3, 4, 6 or 12)")
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    first_month = (moment.month - 1) // months_per_epoch * months_per_epoch + 1
    return f"{moment.year:04d}-{first_month:02d}"


class KeyRing:
    """The keys of all tenants, loaded once and held in memory.

    Lookups of existing keys are dict lookups. Creating or destroying a key rewrites the
    file atomically (blocking, with fsync: a few milliseconds) before memory changes, so a
    key is never handed out before it is durable and a failed write changes nothing.
    Thread-safe, so changes may run in `asyncio.to_thread`.
    """

    def __init__(self, path: Path, registry: dict[str, bytes], epochs: Epochs) -> None:
        """Use `KeyRing.open`; this only holds already validated state."""
        self._path = path
        self._registry = registry
        self._epochs = epochs
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path | str) -> KeyRing:
        """Load the key file, creating it (mode 0600) and its folder if missing.

        Raises KeyFileError if the file is readable or writable by group or others, is not
        a regular file (symlinks are refused: the atomic rewrite would replace the link), or
        is not a version 1 key file.
        """
        path = Path(path)
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Leftovers of a crash mid-write may hold keys destroyed since: remove them.
            for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
                stale.unlink(missing_ok=True)
        except OSError as exc:
            raise KeyFileError(f"cannot prepare the folder of {path}: {exc.strerror}") from None
        raw = read_private_file(path)
        if raw is None:
            _write(path, _serialise({}, {}), exclusive=True)
            raw = read_private_file(path)
            if raw is None:
                raise KeyFileError(f"key file {path} vanished right after it was created")
        registry, epochs = _parse(raw, path)
        return cls(path, registry, epochs)

    @property
    def path(self) -> Path:
        return self._path

    def registry_key(self, tenant_id: str) -> bytes:
        """The tenant's registry key, created and persisted on first use."""
        key = self._registry.get(tenant_id)
        if key is not None:
            return key
        check_tenant_id(tenant_id)
        with self._lock:
            key = self._registry.get(tenant_id)
            if key is None:
                key = self._add(tenant_id, None, secrets.token_bytes(KEY_BYTES))
            return key

    @overload
    def epoch_key(self, tenant_id: str, epoch: str, create: Literal[True] = True) -> bytes: ...
    @overload
    def epoch_key(self, tenant_id: str, epoch: str, create: bool) -> bytes | None: ...
    def epoch_key(self, tenant_id: str, epoch: str, create: bool = True) -> bytes | None:
        """The tenant's key for `epoch` (a label from `epoch_of`).

        Missing keys are created and persisted, unless `create` is False: then None means
        the key never existed or was destroyed. Creating a key for a destroyed epoch gives a
        new, unrelated key; pseudonyms made with the old one stay unlinkable.
        """
        key = self._epochs.get(tenant_id, {}).get(epoch)
        if key is not None or not create:
            return key
        check_tenant_id(tenant_id)
        if not EPOCH_LABEL.fullmatch(epoch):
            raise ValueError('an epoch label looks like "2026-11"')
        with self._lock:
            key = self._epochs.get(tenant_id, {}).get(epoch)
            if key is None:
                key = self._add(tenant_id, epoch, secrets.token_bytes(KEY_BYTES))
            return key

    def epochs(self, tenant_id: str) -> list[str]:
        """Labels of the tenant's epoch keys, oldest first."""
        return sorted(self._epochs.get(tenant_id, {}))

    def tenant_ids(self) -> list[str]:
        """Tenants holding any key, e.g. to find tenants removed from the configuration."""
        return sorted(self._registry.keys() | self._epochs.keys())

    def snapshot(self) -> tuple[dict[str, bytes], Epochs]:
        """Every key as it is now, e.g. to import them into another store."""
        return self._registry, self._epochs

    def destroy_epoch(self, tenant_id: str, epoch: str) -> None:
        """Destroy one epoch key for good. Destroying a missing key does nothing."""
        with self._lock:
            if epoch not in self._epochs.get(tenant_id, {}):
                return
            self._remove(tenant_id, epoch)
            forget_keys()  # the pseudonym function's copy of the key goes too

    def destroy_tenant(self, tenant_id: str) -> None:
        """Destroy all of a tenant's keys, registry key included. Idempotent."""
        with self._lock:
            if tenant_id not in self._registry and tenant_id not in self._epochs:
                return
            self._remove(tenant_id, None)
            forget_keys()

    def _add(self, tenant_id: str, epoch: str | None, key: bytes) -> bytes:
        """Persist a new key (``epoch`` None: the registry key), then publish it.

        Returns the key now in force; a ring shared with other processes may find one
        of theirs already there.
        """
        self._commit(*with_key(self._registry, self._epochs, tenant_id, epoch, key))
        return key

    def _remove(self, tenant_id: str, epoch: str | None) -> None:
        """Persist the loss of one epoch key (``epoch`` None: all the tenant's), then publish it."""
        self._commit(*without_key(self._registry, self._epochs, tenant_id, epoch))

    def _commit(self, registry: dict[str, bytes], epochs: Epochs) -> None:
        """Persist the new state, then publish it (readers see old or new, never a mix)."""
        _write(self._path, _serialise(registry, epochs), exclusive=False)
        self._publish(registry, epochs)

    def _publish(self, registry: dict[str, bytes], epochs: Epochs) -> None:
        self._registry = registry
        self._epochs = epochs


def with_key(
    registry: dict[str, bytes], epochs: Epochs, tenant_id: str, epoch: str | None, key: bytes
) -> tuple[dict[str, bytes], Epochs]:
    """New state with one key more (``epoch`` None: the registry key); inputs untouched."""
    if epoch is None:
        return {**registry, tenant_id: key}, epochs
    return registry, {**epochs, tenant_id: {**epochs.get(tenant_id, {}), epoch: key}}


def without_key(
    registry: dict[str, bytes], epochs: Epochs, tenant_id: str, epoch: str | None
) -> tuple[dict[str, bytes], Epochs]:
    """New state without one epoch key (``epoch`` None: without any of the tenant's)."""
    if epoch is None:
        return (
            {tid: key for tid, key in registry.items() if tid != tenant_id},
            {tid: e for tid, e in epochs.items() if tid != tenant_id},
        )
    remaining = {label: key for label, key in epochs.get(tenant_id, {}).items() if label != epoch}
    rest = {tid: e for tid, e in epochs.items() if tid != tenant_id}
    if remaining:
        rest[tenant_id] = remaining
    return registry, rest


def check_tenant_id(tenant_id: str) -> None:
    """Refuse what cannot name a tenant before a key is made for it."""
    if not isinstance(tenant_id, str) or not tenant_id:
        raise ValueError("a tenant id is a non-empty string")


def read_private_file(path: Path, what: str = "key file") -> bytes | None:
    """The file's bytes, None if it does not exist; checks type and mode on the open file.

    ``what`` names the file in errors ("key file", "KEK file"), and the setting to fix.
    """
    setting = what.replace(" ", "_").lower()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if os.path.islink(path):
            raise KeyFileError(f"{what} {path} is a symlink; point {setting} at a file") from None
        raise KeyFileError(f"cannot open {what} {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"{what} {path} is not a regular file")
        if info.st_mode & 0o077:
            mode = stat.S_IMODE(info.st_mode)
            raise KeyFileError(
                f"{what} {path} is accessible to group or others (mode {mode:04o});"
                f" run: chmod 600 {path}"
            )
        with open(fd, "rb", closefd=False) as file:
            return file.read()
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _write(path: Path, data: bytes, *, exclusive: bool) -> None:
    """Write `data` to a 0600 temp file, fsync it, move it in place, fsync the folder.

    A crash leaves the old file or the new one, never a mix. With `exclusive` the file is
    only created, never replaced (`os.link` fails if it exists), so two processes
    starting at once cannot overwrite each other's fresh file.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(fd)
            if exclusive:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    return  # created by someone else meanwhile: use theirs
            else:
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise KeyFileError(f"cannot write key file {path}: {exc.strerror}") from None


def _serialise(registry: dict[str, bytes], epochs: Epochs) -> bytes:
    tenants: dict[str, dict[str, Any]] = {}
    for tenant_id in sorted(registry.keys() | epochs.keys()):
        entry: dict[str, Any] = {}
        if tenant_id in registry:
            entry["registry_key"] = _b64(registry[tenant_id])
        entry["epochs"] = {label: _b64(key) for label, key in epochs.get(tenant_id, {}).items()}
        tenants[tenant_id] = entry
    document = {"version": _VERSION, "tenants": tenants}
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def _parse(raw: bytes, path: Path) -> tuple[dict[str, bytes], Epochs]:
    """Validate a key file's content; errors say where, never what the key was."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KeyFileError(f"key file {path} is not valid JSON") from None
    version = document.get("version") if isinstance(document, dict) else None
    if type(version) is not int or version != _VERSION:  # bool is an int: true == 1
        raise KeyFileError(f"key file {path} is not a version {_VERSION} key file")
    tenants = document.get("tenants")
    if set(document) != {"version", "tenants"} or not isinstance(tenants, dict):
        raise KeyFileError(f'key file {path} must hold exactly "version" and "tenants"')
    registry: dict[str, bytes] = {}
    epochs: Epochs = {}
    for tenant_id, entry in tenants.items():
        where = f"key file {path}, tenant {tenant_id!r}"
        if not tenant_id:
            raise KeyFileError(f"key file {path} has an empty tenant id")
        if not isinstance(entry, dict) or not set(entry) <= {"registry_key", "epochs"}:
            raise KeyFileError(f'{where}: expected only "registry_key" and "epochs"')
        if "registry_key" in entry:
            registry[tenant_id] = _decode(entry["registry_key"], f"{where}, registry key")
        labels = entry.get("epochs", {})
        if not isinstance(labels, dict):
            raise KeyFileError(f"{where}: epochs must be an object")
        tenant_epochs: dict[str, bytes] = {}
        for label, value in labels.items():
            if not EPOCH_LABEL.fullmatch(label):
                raise KeyFileError(f'{where}: epoch label {label!r} is not like "2026-11"')
            tenant_epochs[label] = _decode(value, f"{where}, epoch {label}")
        if tenant_epochs:
            epochs[tenant_id] = tenant_epochs
    return registry, epochs


def _decode(value: object, where: str) -> bytes:
    if not isinstance(value, str):
        raise KeyFileError(f"{where}: expected a base64 string")
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(f"{where}: not valid base64") from None
    if len(key) != KEY_BYTES:
        raise KeyFileError(f"{where}: expected {KEY_BYTES} bytes, got {len(key)}")
    return key
