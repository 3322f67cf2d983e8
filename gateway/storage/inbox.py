"""The handset inbox: what each simulated handset received, bodies included.

A body arrives here when its message is delivered (committed with the final state)
and is kept for ``privacy.body_ttl``; concatenated parts are stored one row each and
joined when read, as a handset shows them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from gateway.domain import InboxEntry, Outgoing, Part
from gateway.encoding import Encoding, join_ucs2_halves
from gateway.storage.base import Batched, HandsetActivity, Steps
from gateway.storage.engine import GroupCommit
from gateway.storage.traffic import part, part_columns

INSERT_INBOX = Batched(
    "INSERT INTO inbox (tenant, msisdn, message_id, sender, body, received_at,"
    ' part_ref, part_seq, part_total, "binary", message_class) VALUES {values}'
)


class InboxRepository:
    def __init__(self, engine: GroupCommit) -> None:
        self._engine = engine
        self._body_holds = engine.dialect.contains("lower(body)", "lower(?)")

    def delivery_steps(self, item: Outgoing, at: float) -> Steps:
        """The steps that put a body in the handset's inbox (queued with the final status)."""
        message = item.message
        row = (
            message.tenant,
            message.recipient,
            message.id,
            message.sender,
            item.body,
            at,
            *part_columns(item.part),
            message.encoding is Encoding.BINARY,
            message.message_class,
        )
        return ((INSERT_INBOX, (row,)),)

    async def received(self, tenant: str, msisdn: str, limit: int = 100) -> list[InboxEntry]:
        """What a handset received, newest first, with concatenated parts joined."""
        rows = await self._engine.fetch(
            "SELECT message_id, sender, body, received_at, part_ref, part_seq, part_total,"
            ' "binary", message_class FROM inbox WHERE tenant = ? AND msisdn = ?'
            " ORDER BY seq DESC LIMIT ?",
            (tenant, msisdn, limit * 8),
        )
        return _join_parts(tenant, msisdn, reversed(rows))[::-1][:limit]

    async def delivered(
        self, tenant: str, msisdn: str, message_id: str
    ) -> tuple[str, Part | None] | None:
        """The body (and part) the handset received as ``message_id``, while the inbox holds it."""
        row = await self._engine.fetch_one(
            "SELECT body, part_ref, part_seq, part_total FROM inbox"
            " WHERE tenant = ? AND msisdn = ? AND message_id = ?",
            (tenant, msisdn, message_id),
        )
        return (row[0], part(*row[1:])) if row else None

    async def parts(
        self, tenant: str, message_ids: Sequence[str]
    ) -> dict[str, tuple[str, str, Part | None]]:
        """The handset, body and part of each of the messages that was delivered."""
        if not message_ids:
            return {}
        rows = await self._engine.fetch(
            "SELECT message_id, msisdn, body, part_ref, part_seq, part_total FROM inbox"
            f" WHERE tenant = ? AND message_id IN ({', '.join('?' * len(message_ids))})",
            (tenant, *message_ids),
        )
        return {row[0]: (row[1], row[2], part(*row[3:])) for row in rows}

    async def with_text(self, tenant: str, text: str, limit: int) -> list[str]:
        """Ids of the tenant's delivered messages whose body holds ``text`` (any case)."""
        rows = await self._engine.fetch(
            f"SELECT message_id FROM inbox WHERE tenant = ? AND {self._body_holds}"
            " ORDER BY seq DESC LIMIT ?",
            (tenant, text, limit),
        )
        return [row[0] for row in rows]

    async def for_handset(self, tenant: str, msisdn: str) -> list[InboxEntry]:
        """Every row a handset holds, oldest first, one entry per part (for an export)."""
        rows = await self._engine.fetch_bulk(
            'SELECT message_id, sender, body, received_at, "binary", message_class FROM inbox'
            " WHERE tenant = ? AND msisdn = ? ORDER BY seq",
            (tenant, msisdn),
        )
        return [
            InboxEntry((m,), tenant, msisdn, s, b, t, 0, bool(x), c) for m, s, b, t, x, c in rows
        ]

    async def count_handset(self, tenant: str, msisdn: str) -> int:
        return await self._engine.count(
            "SELECT count(*) FROM inbox WHERE tenant = ? AND msisdn = ?", (tenant, msisdn)
        )

    def redact_message(self, tenant: str, message_id: str) -> Steps:
        """Empty the body a handset holds of one message (a Twilio redaction)."""
        return (
            (
                "UPDATE inbox SET body = '' WHERE tenant = ? AND message_id = ?",
                ((tenant, message_id),),
            ),
        )

    async def handsets(self, tenant: str, limit: int) -> list[HandsetActivity]:
        """The ``limit`` handsets that received from the tenant last: rows, last receipt time."""
        rows = await self._engine.fetch(
            "SELECT msisdn, count(*), max(received_at) FROM inbox WHERE tenant = ?"
            " GROUP BY msisdn ORDER BY 3 DESC LIMIT ?",
            (tenant, limit),
        )
        return [HandsetActivity(*row) for row in rows]

    async def handset_counts(self, tenant: str, msisdns: Sequence[str]) -> dict[str, int]:
        """Rows per handset, for those of ``msisdns`` that received anything."""
        marks = ", ".join("?" * len(msisdns))
        rows = await self._engine.fetch(
            f"SELECT msisdn, count(*) FROM inbox WHERE tenant = ? AND msisdn IN ({marks})"
            " GROUP BY msisdn",
            (tenant, *msisdns),
        )
        return dict(rows)

    def erase_handset(self, tenant: str, msisdn: str) -> Steps:
        return (("DELETE FROM inbox WHERE tenant = ? AND msisdn = ?", ((tenant, msisdn),)),)

    async def delete_received_before(self, cutoff: float, limit: int) -> int:
        """Delete up to ``limit`` bodies received before ``cutoff``; 0 means none is left."""
        rows = await self._engine.fetch_bulk(
            "SELECT seq FROM inbox WHERE received_at < ? LIMIT ?", (cutoff, limit)
        )
        if rows:
            await self._engine.commit("erase_bodies", (("DELETE FROM inbox WHERE seq = ?", rows),))
        return len(rows)

    async def tenant_rows(self, tenant: str) -> dict[str, int]:
        return {
            "inbox": await self._engine.count(
                "SELECT count(*) FROM inbox WHERE tenant = ?", (tenant,)
            )
        }

    def purge_tenant(self, tenant: str) -> Steps:
        return (("DELETE FROM inbox WHERE tenant = ?", ((tenant,),)),)


def _join_parts(tenant: str, msisdn: str, rows: Iterable[Sequence[Any]]) -> list[InboxEntry]:
    """Join concatenated parts (oldest first in, oldest first out), as a handset shows them.

    A part opens a group keyed by sender and reference; the group is complete once it
    holds every sequence number, and a repeated sequence number starts a new group
    (references are only 8 or 16 bits, so they come round again).
    """
    slots: list[InboxEntry | tuple[str, int, dict[int, tuple[str, str, float, bool, Any]]]] = []
    open_groups: dict[tuple[str, int, int], int] = {}
    for message_id, sender, body, received_at, ref, seq, total, binary, kind in rows:
        if ref is None:
            slots.append(
                InboxEntry(
                    (message_id,), tenant, msisdn, sender, body, received_at, 0, bool(binary), kind
                )
            )
            continue
        key = (sender, ref, total)
        index = open_groups.get(key)
        if index is None or seq in slots[index][2]:  # type: ignore[index]
            index = open_groups[key] = len(slots)
            slots.append((sender, total, {}))
        parts = slots[index][2]  # type: ignore[index]
        parts[seq] = (message_id, body, received_at, bool(binary), kind)
        if len(parts) == total:
            del open_groups[key]
    entries: list[InboxEntry] = []
    for slot in slots:
        if isinstance(slot, InboxEntry):
            entries.append(slot)
            continue
        sender, total, parts = slot
        ordered = [parts[seq] for seq in sorted(parts)]
        entries.append(
            InboxEntry(
                message_ids=tuple(p[0] for p in ordered),
                tenant=tenant,
                msisdn=msisdn,
                sender=sender,
                # Only whole messages mend pairs split between parts: a missing part
                # could otherwise join two halves that never met.
                body=join_ucs2_halves([p[1] for p in ordered])
                if len(ordered) == total
                else "".join(p[1] for p in ordered),
                received_at=ordered[-1][2],
                parts_missing=total - len(ordered),
                binary=ordered[0][3],
                message_class=ordered[0][4],
            )
        )
    return entries
