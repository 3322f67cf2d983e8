"""Kannel (Debian's bearerbox + smsbox) bound to the gateway as a real third-party ESME.

``running_kannel`` writes a config under the test's directory with free loopback
ports, starts bearerbox, then smsbox once bearerbox listens for boxes (smsbox gives
up at once otherwise), and is ready when bearerbox's status page shows smsbox
connected and the SMPP connection online (bound). Both are stopped by their PIDs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.conftest import EVENT_TIMEOUT
from tests.interop.programs import free_ports, require_program, started, tail

KANNEL_PACKAGE = "Debian's kannel package"
ADMIN_PASSWORD = "interop-admin"
SENDSMS_USER = "interop"
SENDSMS_PASSWORD = "interop-pw"
# A port another process took between free_ports() and Kannel's bind makes a box
# exit at start; a fresh set of ports then almost surely works.
START_ATTEMPTS = 3
POLL = 0.05  # between looks at a real condition (port open, status page), never a wait


class ProgramExited(Exception):
    """A Kannel box left before it was ready."""


@dataclass
class KannelAccount:
    """The tenant's SMPP credentials and numbering as Kannel's smsc group sends them."""

    system_id: str
    password: str


def kannel_config(
    workdir: Path,
    ports: Mapping[str, int],
    smpp_port: int,
    account: KannelAccount,
    service_url: str,
) -> str:
    return f"""\
group = core
admin-port = {ports["admin"]}
admin-interface = 127.0.0.1
admin-password = {ADMIN_PASSWORD}
status-password = {ADMIN_PASSWORD}
smsbox-port = {ports["box"]}
smsbox-interface = 127.0.0.1
box-allow-ip = "127.0.0.1"
log-file = "{workdir / "bearerbox.log"}"
log-level = 0
dlr-storage = internal

group = smsc
smsc = smpp
smsc-id = smsgw
host = 127.0.0.1
port = {smpp_port}
transceiver-mode = true
smsc-username = {account.system_id}
smsc-password = {account.password}
system-type = ""
# No TON/NPI settings: Kannel 1.4.5 then sends a number given with '+' as TON 1/NPI 1
# (the '+' stripped), bare digits as TON 2 (national)/NPI 1 and a name as TON 5/NPI 0,
# which the gateway's lenient address_policy (the default) reads as they are meant.
# No msg-id-type: Kannel then keeps submit_sm_resp and receipt ids as the strings
# they are, so our 20-hex-digit ids match as they come and reach dlr-url's %F.
# msg-id-type = 0x03 would turn them into 64-bit decimals (80-bit ids overflow),
# which no longer name our message.
reconnect-delay = 1
enquire-link-interval = 30

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {ports["box"]}
sendsms-port = {ports["sendsms"]}
sendsms-interface = 127.0.0.1
log-file = "{workdir / "smsbox.log"}"
log-level = 0

group = sendsms-user
username = {SENDSMS_USER}
password = {SENDSMS_PASSWORD}
max-messages = 10
concatenation = true

group = sms-service
keyword = default
catch-all = true
max-messages = 0
get-url = "{service_url}?from=%p&to=%P&text=%a"
"""


@dataclass
class Kannel:
    workdir: Path
    ports: dict[str, int]  # admin, box (bearerbox's port for smsbox), sendsms

    @classmethod
    def configure(
        cls, workdir: Path, smpp_port: int, account: KannelAccount, service_url: str
    ) -> Kannel:
        """A fresh kannel.conf in ``workdir`` on ports that are free now."""
        workdir.mkdir(parents=True, exist_ok=True)
        kannel = cls(workdir, dict(zip(("admin", "box", "sendsms"), free_ports(3), strict=True)))
        kannel.config.write_text(
            kannel_config(workdir, kannel.ports, smpp_port, account, service_url)
        )
        return kannel

    @property
    def config(self) -> Path:
        return self.workdir / "kannel.conf"

    @property
    def sendsms_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['sendsms']}/cgi-bin/sendsms"

    @property
    def status_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['admin']}/status.txt?password={ADMIN_PASSWORD}"

    async def sendsms(self, http: aiohttp.ClientSession, **params: str) -> tuple[int, str]:
        query = {"username": SENDSMS_USER, "password": SENDSMS_PASSWORD, **params}
        async with http.get(self.sendsms_url, params=query) as response:
            return response.status, await response.text()

    def log(self, box: str) -> Path:
        """Where a box's stdout and stderr go (its own log file is ``{box}.log``)."""
        return self.workdir / f"{box}.out"

    def logs(self) -> str:
        return "\n".join(
            tail(self.workdir / name)
            for name in ("bearerbox.out", "bearerbox.log", "smsbox.out", "smsbox.log")
        )


async def _until(
    condition: Callable[[], Awaitable[bool]], processes: list[asyncio.subprocess.Process]
) -> None:
    """Await ``condition()`` becoming true while every box still runs."""
    while True:
        if any(process.returncode is not None for process in processes):
            raise ProgramExited
        if await condition():
            return
        await asyncio.sleep(POLL)


async def _listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def _online(http: aiohttp.ClientSession, status_url: str) -> bool:
    """bearerbox's status page shows a connected smsbox and the SMPP connection bound."""
    try:
        async with http.get(status_url) as response:
            status = await response.text()
    except aiohttp.ClientError:
        return False
    smsc = [line for line in status.splitlines() if "SMPP:" in line]
    boxes = [line for line in status.splitlines() if "smsbox:" in line and "on-line" in line]
    return bool(boxes) and bool(smsc) and "(online" in smsc[0]


async def _start(
    stack: contextlib.AsyncExitStack,
    http: aiohttp.ClientSession,
    kannel: Kannel,
    programs: tuple[str, str],
) -> None:
    """Start bearerbox, then smsbox once bearerbox takes boxes; return once both are ready."""
    bearerbox, smsbox = programs
    boxes = [
        await stack.enter_async_context(
            started([bearerbox, str(kannel.config)], kannel.log("bearerbox"))
        )
    ]
    await asyncio.wait_for(_until(lambda: _listening(kannel.ports["box"]), boxes), EVENT_TIMEOUT)
    boxes.append(
        await stack.enter_async_context(started([smsbox, str(kannel.config)], kannel.log("smsbox")))
    )
    await asyncio.wait_for(_until(lambda: _online(http, kannel.status_url), boxes), EVENT_TIMEOUT)


@contextlib.asynccontextmanager
async def running_kannel(
    workdir: Path, smpp_port: int, account: KannelAccount, service_url: str
) -> AsyncIterator[Kannel]:
    programs = (
        require_program("bearerbox", KANNEL_PACKAGE),
        require_program("smsbox", KANNEL_PACKAGE),
    )
    async with aiohttp.ClientSession() as http:
        for attempt in range(1, START_ATTEMPTS + 1):
            kannel = Kannel.configure(workdir, smpp_port, account, service_url)
            async with contextlib.AsyncExitStack() as stack:
                try:
                    await _start(stack, http, kannel, programs)
                except ProgramExited:
                    if attempt == START_ATTEMPTS:
                        raise AssertionError("Kannel did not start\n" + kannel.logs()) from None
                    continue
                except TimeoutError:
                    raise AssertionError("Kannel was not ready\n" + kannel.logs()) from None
                yield kannel
                return
