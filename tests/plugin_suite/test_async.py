"""The plugin from async tests: the same calls with an ``a`` prefix, awaited."""

from __future__ import annotations

import asyncio

import pytest

from gateway.testing import ApiError


async def test_an_async_send_reaches_the_handset_inbox(smsgw, callbacks) -> None:
    sent = await smsgw.asend("+46701120001", "Async hello", callback_url=callbacks.url)
    callback = await asyncio.to_thread(callbacks.next)
    assert (callback["id"], callback["status"]) == (sent["id"], "delivered")
    (received,) = await smsgw.ainbox("+46701120001")
    assert received["body"] == "Async hello"
    assert (await smsgw.amessage(sent["id"]))["status"] == "delivered"


async def test_an_async_opt_out_and_reply(smsgw) -> None:
    await smsgw.aopt_out("+46701120002")
    with pytest.raises(ApiError):
        await smsgw.asend("+46701120002", "Hello")
    mo = await smsgw.areply("+46701120003", "+46700000001", "HELP")
    assert mo["keyword"] == "help"
