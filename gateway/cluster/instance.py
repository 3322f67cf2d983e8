"""Which instance this process is, among several sharing one store."""

from __future__ import annotations

import socket

from gateway.config import Config


def instance_id(config: Config, http_port: int) -> str:
    """``[instance] id`` if set, else host name and HTTP port: unique per listening process."""
    return config.instance.id or f"{socket.gethostname()}:{http_port}"
