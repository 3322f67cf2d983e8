"""The notice queue on its own: a real store under tmp_path, receivers without sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from gateway.config import SmppConfig, StorageConfig
from gateway.domain import Notice, NoticeKind, Status
from gateway.metrics import Metrics
from gateway.store import Store
from smpp.notices import NoticeQueue
from smpp.pdu import CommandStatus

S = CommandStatus
TIMEOUT = 10.0


class FakeReceiver:
    """Records what the queue sends it; ``sent`` is awaitable one notice at a time."""

    def __init__(self) -> None:
        self.sequence = 0
        self.open = True
        self.sent: asyncio.Queue[tuple[int, Notice]] = asyncio.Queue()

    def can_deliver(self) -> bool:
        return self.open

    def deliver_many(self, notices: Sequence[Notice]) -> list[int]:
        sequences = []
        for notice in notices:
            self.sequence += 1
            self.sent.put_nowait((self.sequence, notice))
            sequences.append(self.sequence)
        return sequences

    async def next(self) -> tuple[int, Notice]:
        return await asyncio.wait_for(self.sent.get(), TIMEOUT)

    def drained(self) -> list[tuple[int, Notice]]:
        items = []
        while not self.sent.empty():
            items.append(self.sent.get_nowait())
        return items


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(StorageConfig(path=str(tmp_path / "notices.sqlite3")), Metrics())
    yield store
    await store.close()


def queue_for(store: Store, **config: object) -> NoticeQueue:
    return NoticeQueue(store, SmppConfig(**config), Metrics(), time.time)  # type: ignore[arg-type]


async def kept(store: Store, count: int, handset: str = "+46701234567") -> list[Notice]:
    """``count`` receipts with committed rows, as the network's final hook leaves them."""
    now = time.time()
    notices = [
        Notice(
            tenant="acme",
            kind=NoticeKind.RECEIPT,
            message_id=f"m{i}",
            handset=handset,
            address="Acme",
            created_at=now,
            expires_at=now + 3600,
            status=Status.DELIVERED,
            submitted_at=now,
        )
        for i in range(count)
    ]
    for notice in notices:
        store.notices.keep(notice)
    await store.flush()
    return notices


async def rows(store: Store) -> int:
    await store.flush()
    return sum((await store.notices.count_by_tenant()).values())


async def test_ids_are_assigned_at_queue_time_and_continue_after_a_restart(
    tmp_path: Path,
) -> None:
    config = StorageConfig(path=str(tmp_path / "ids.sqlite3"))
    store = await Store.open(config, Metrics())
    first = await kept(store, 3)
    assert [n.queue_id for n in first] == [1, 2, 3]
    await store.close()
    store = await Store.open(config, Metrics())
    [after] = await kept(store, 1)
    assert after.queue_id == 4
    await store.close()


async def test_pending_is_computed_and_memory_is_bounded(store: Store) -> None:
    queue = queue_for(store, notice_memory=4, deliver_window=2)
    assert queue.pending == 0
    for notice in await kept(store, 10):
        queue.offer(notice)
    assert queue.pending == 10  # 4 in memory, 6 in the store only

    receiver = FakeReceiver()
    queue.attach(receiver, "acme")
    first = [await receiver.next() for _ in range(2)]
    assert queue.outstanding("acme") == 2 and receiver.drained() == []  # the window is full
    seen = {n.message_id for _, n in first}
    unacked = list(first)
    while len(seen) < 10:
        sequence, _ = unacked.pop(0)
        queue.answered(receiver, sequence, S.ESME_ROK)
        sequence_notice = await receiver.next()  # loads from the store keep it coming
        unacked.append(sequence_notice)
        seen.add(sequence_notice[1].message_id)
        assert queue.pending == 10 - (len(seen) - len(unacked))
    for sequence, _ in unacked:
        queue.answered(receiver, sequence, S.ESME_ROK)
    assert queue.pending == 0 and queue.outstanding("acme") == 0
    assert await rows(store) == 0
    await queue.close()


async def test_a_closed_session_leaves_its_notices_for_the_next(store: Store) -> None:
    queue = queue_for(store, deliver_window=3)
    for notice in await kept(store, 3):
        queue.offer(notice)
    gone = FakeReceiver()
    queue.attach(gone, "acme")
    sent = [await gone.next() for _ in range(3)]
    queue.detach(gone)
    assert queue.pending == 3

    late = FakeReceiver()
    queue.attach(late, "acme")
    again = [await late.next() for _ in range(3)]
    assert [n.message_id for _, n in again] == [n.message_id for _, n in sent]
    queue.answered(gone, sent[0][0], S.ESME_ROK)  # a late answer on the old session: ignored
    assert queue.pending == 3
    await queue.close()


async def test_temporary_errors_back_off_doubling_to_the_cap(store: Store) -> None:
    queue = queue_for(store, notice_first_retry=0.01, notice_max_retry=0.04)
    assert [queue.retry_delay(n) for n in (1, 2, 3, 4, 5, 2000)] == [
        0.01,
        0.02,
        0.04,
        0.04,
        0.04,
        0.04,
    ]
    [notice] = await kept(store, 1)
    queue.offer(notice)
    receiver = FakeReceiver()
    queue.attach(receiver, "acme")
    for _ in range(3):
        sequence, sent = await receiver.next()
        queue.answered(receiver, sequence, S.ESME_RX_T_APPN)
        assert queue.pending == 1 and receiver.drained() == []  # it waits out its backoff
    sequence, sent = await receiver.next()
    assert sent.message_id == notice.message_id
    queue.answered(receiver, sequence, S.ESME_ROK)
    assert queue.pending == 0
    await queue.close()


async def test_permanent_errors_and_nacks_give_up(store: Store) -> None:
    queue = queue_for(store)
    for notice in await kept(store, 2):
        queue.offer(notice)
    receiver = FakeReceiver()
    queue.attach(receiver, "acme")
    (first, _), (second, _) = await receiver.next(), await receiver.next()
    queue.answered(receiver, first, S.ESME_RX_P_APPN)
    queue.nacked(receiver, second)
    assert queue.pending == 0 and await rows(store) == 0
    assert receiver.drained() == []
    await queue.close()


async def test_erasure_drops_the_handset_from_memory_and_the_count(store: Store) -> None:
    queue = queue_for(store, notice_memory=2)
    for notice in await kept(store, 3) + await kept(store, 2, handset="+46709999999"):
        queue.offer(notice)
    assert queue.pending == 5
    # What privacy.subjects.erase does: delete the rows, then tell the queue.
    await store.commit("erase", store.notices.erase_handset("acme", "+46701234567"))
    queue.forget_handset("acme", "+46701234567", stored=3)
    assert queue.pending == 2

    receiver = FakeReceiver()
    queue.attach(receiver, "acme")
    sent = [await receiver.next() for _ in range(2)]
    assert {n.handset for _, n in sent} == {"+46709999999"}
    for sequence, _ in sent:
        queue.answered(receiver, sequence, S.ESME_ROK)
    assert queue.pending == 0
    await queue.close()


async def test_a_restart_counts_what_the_store_kept(store: Store) -> None:
    await kept(store, 3)
    queue = queue_for(store)
    await queue.open()
    assert queue.pending == 3
    receiver = FakeReceiver()
    queue.attach(receiver, "acme")
    sent = [await receiver.next() for _ in range(3)]
    for sequence, _ in sent:
        queue.answered(receiver, sequence, S.ESME_ROK)
    assert queue.pending == 0 and await rows(store) == 0
    await queue.close()


async def test_expired_notices_are_given_up_wherever_they_are(store: Store) -> None:
    clock = [time.time()]
    queue = NoticeQueue(store, SmppConfig(notice_memory=1), Metrics(), lambda: clock[0])
    for notice in await kept(store, 3):
        queue.offer(notice)  # one in memory, two in the store only
    clock[0] += 7200
    await queue.forget_expired()
    assert queue.pending == 0 and await rows(store) == 0
    await queue.close()
