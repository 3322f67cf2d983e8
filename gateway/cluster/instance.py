"""Which instance this process is, among several sharing one store, and which run of it."""

from __future__ import annotations

import secrets
import socket

from gateway.config import Config

# Between the instance id and the run's token in an owner (ids never contain it).
_RUN_MARK = "#"


def instance_id(config: Config, http_port: int) -> str:
    """``[instance] id`` if set, else host name and HTTP port: unique per listening process."""
    return config.instance.id or f"{socket.gethostname()}:{http_port}"


def run_owner(instance: str) -> str:
    """The name this run holds rows under: the instance id and a token of this run alone,
    so a restart never mistakes the rows of the run it replaces for its own."""
    return f"{instance}{_RUN_MARK}{secrets.token_hex(4)}"


def runs_of_instance(owner: str) -> str:
    """The prefix of every owner that is a run of ``owner``'s instance (``owner`` among them)."""
    instance, mark, _ = owner.rpartition(_RUN_MARK)
    return f"{instance}{mark}"
