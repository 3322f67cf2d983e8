"""Logging as key=value text or JSON lines, with personal data kept out by construction.

Our own records are events: a name and fields chosen at the call site (ids,
codes, counts, tenant ids), written with `log_event`. Records from libraries
keep only their message template, because their arguments are where a library
puts a SQL call's parameters or a callback's arguments. Exceptions keep their
type and frames but not their message, which can quote the data that caused
them. Domain objects leave numbers and bodies out of their repr for the lines
that remain (asyncio's "Exception in callback" names the callback's arguments).
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from typing import Any

from gateway.config import LogConfig, LogFormat
from gateway.documents import iso_time

FIELDS = "smsgw_fields"
# Libraries that log every call at DEBUG (aiosqlite: two lines per SQL statement).
QUIET_LIBRARIES = ("aiosqlite",)


def log_event(
    logger: logging.Logger,
    event: str,
    level: int = logging.INFO,
    *,
    exc_info: bool = False,
    **fields: object,
) -> None:
    """Log ``event`` with ``fields``; only pass values that name no person."""
    if logger.isEnabledFor(level):
        logger.log(level, event, exc_info=exc_info, extra={FIELDS: fields})


def describe(record: logging.LogRecord) -> dict[str, Any]:
    """The safe content of a record, in output order."""
    entry: dict[str, Any] = {
        "time": iso_time(record.created),
        "level": record.levelname.lower(),
        "logger": record.name,
    }
    fields = getattr(record, FIELDS, None)
    if fields is not None:
        entry["event"] = record.msg
        entry.update({k: v for k, v in fields.items() if k not in entry})
    else:
        # The template, without its arguments; the first line only, since libraries
        # such as asyncio append the repr of the objects involved on later lines.
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        entry["event"] = template.split("\n", 1)[0]
    if record.exc_info and record.exc_info[0] is not None:
        error, _, tb = record.exc_info
        entry["error"] = f"{error.__module__}.{error.__qualname__}"
        entry["stack"] = [
            f"{frame.filename}:{frame.lineno} {frame.name}" for frame in traceback.extract_tb(tb)
        ]
    return entry


class JsonLinesFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(describe(record), ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger event key=value ...``, then the stack indented."""

    def format(self, record: logging.LogRecord) -> str:
        entry = describe(record)
        stack = entry.pop("stack", [])
        head = [entry.pop("time"), entry.pop("level").upper(), entry.pop("logger")]
        head.append(str(entry.pop("event")))
        head.extend(f"{key}={_text(value)}" for key, value in entry.items())
        return " ".join(head) + "".join(f"\n    at {frame}" for frame in stack)


def _text(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(text) if not text or any(c in text for c in ' "=\n') else text


def configure(config: LogConfig) -> None:
    """Send every log line to stderr in the configured format and level."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonLinesFormatter() if config.format is LogFormat.JSON else TextFormatter()
    )
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.level.upper())
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
