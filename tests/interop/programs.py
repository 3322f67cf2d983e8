"""Finding, starting and stopping the third-party programs the interop tests drive."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from tests.conftest import EVENT_TIMEOUT

INSTALL_HINT = "scripts/ensure-interop installs it"
# Grace for a program to leave on SIGTERM before it is killed: Kannel's bearerbox can
# hang in its shutdown when its SMSC connection is gone, and holds nothing we keep.
STOP_GRACE = 3.0


def require_program(name: str, package: str) -> str:
    """The program's path, or skip the test saying which package is missing and why."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    path = shutil.which(name, path=search)
    if path is None:
        pytest.skip(f"{name} not found: install {package} ({INSTALL_HINT})")
    return path


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago.

    The sockets are held open together so the ports differ; another process may
    still take one before the program binds it, so callers retry when it cannot.
    """
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


async def stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the process we started (by its PID), SIGKILL it if it does not leave."""
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE)
        except TimeoutError:
            process.kill()
    await asyncio.wait_for(process.wait(), EVENT_TIMEOUT)


@contextlib.asynccontextmanager
async def started(
    args: Sequence[str], log: Path, *, pipe_stdout: bool = False
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ``args`` with stderr (and stdout unless piped) in ``log``, which never fills."""
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if pipe_stdout else out,
            stderr=out,
        )
    try:
        yield process
    finally:
        await stop(process)


def tail(path: Path, lines: int = 30) -> str:
    """The end of a log, for a failure message."""
    if not path.exists():
        return f"({path.name} not written)"
    return f"--- {path.name}:\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class JsonLines:
    """A client script's stdout, one JSON event per line, read as the test awaits them."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log

    async def next(self) -> dict[str, object]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), EVENT_TIMEOUT)
        if not line:
            await asyncio.wait_for(self.process.wait(), EVENT_TIMEOUT)
            raise AssertionError(f"client exited {self.process.returncode}\n{tail(self.log)}")
        event: dict[str, object] = json.loads(line)
        return event

    async def exit_status(self) -> int:
        return await asyncio.wait_for(self.process.wait(), EVENT_TIMEOUT)


@contextlib.asynccontextmanager
async def json_lines(args: Sequence[str], log: Path) -> AsyncIterator[JsonLines]:
    """Run a client script; its events come from stdout, its stderr goes to ``log``."""
    async with started(args, log, pipe_stdout=True) as process:
        yield JsonLines(process, log)
