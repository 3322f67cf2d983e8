"""The consent registry's events (``consent_events``), append-only.

Subjects are keyed pseudonyms (privacy.registry makes them); a subject's events are
one range scan of ``consent_by_subject``, so a lookup costs the same at any size.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from gateway.storage.base import ConsentRow, NewConsentRow, Steps
from gateway.storage.engine import GroupCommit

_COLUMNS = "seq, tenant, subject, kind, purpose, sender, source, evidence, at"
_INSERT_EVENT = (
    "INSERT INTO consent_events (tenant, subject, kind, purpose, sender, source, evidence, at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_SUBJECTS_AFTER = (
    "SELECT DISTINCT subject FROM consent_events WHERE tenant = ? AND subject > ?"
    " ORDER BY subject LIMIT ?"
)
# Subjects per lookup query, well below SQLite's limit on parameters.
_CHUNK = 500


class ConsentRepository:
    def __init__(self, engine: GroupCommit) -> None:
        self._engine = engine

    async def events(self, tenant: str, subjects: Sequence[str]) -> list[ConsentRow]:
        """The events of these subjects, each subject's in the order they were recorded."""
        rows: list[ConsentRow] = []
        for start in range(0, len(subjects), _CHUNK):
            chunk = subjects[start : start + _CHUNK]
            rows += await self._engine.fetch(
                f"SELECT {_COLUMNS} FROM consent_events WHERE tenant = ?"
                f" AND subject IN ({', '.join('?' * len(chunk))}) ORDER BY seq",
                (tenant, *chunk),
            )
        return rows

    async def history(self, tenant: str, subject: str) -> list[ConsentRow]:
        return await self._engine.fetch(
            f"SELECT {_COLUMNS} FROM consent_events WHERE tenant = ? AND subject = ? ORDER BY seq",
            (tenant, subject),
        )

    async def subjects_after(self, tenant: str, after: str, limit: int) -> list[str]:
        """The tenant's subjects with any event, in pseudonym order, after ``after``."""
        rows = await self._engine.fetch(_SUBJECTS_AFTER, (tenant, after, limit))
        return [subject for (subject,) in rows]

    async def subject_pages(self, tenant: str, size: int) -> AsyncIterator[list[str]]:
        """Every subject of the tenant with any event, ``size`` at a time, in pseudonym order.

        Each page is a read of its own on the bulk reader: none holds a snapshot (and
        the WAL) for the whole walk, and the reads that submits wait for never queue
        behind it.
        """
        after = ""
        while rows := await self._engine.fetch_bulk(_SUBJECTS_AFTER, (tenant, after, size)):
            page = [subject for (subject,) in rows]
            yield page
            after = page[-1]

    def append(self, rows: Sequence[NewConsentRow]) -> Steps:
        return ((_INSERT_EVENT, rows),)

    async def count_subject(self, tenant: str, subject: str) -> int:
        return await self._engine.count(
            "SELECT count(*) FROM consent_events WHERE tenant = ? AND subject = ?",
            (tenant, subject),
        )

    def erase_subject(self, tenant: str, subject: str) -> Steps:
        return (
            ("DELETE FROM consent_events WHERE tenant = ? AND subject = ?", ((tenant, subject),)),
        )

    async def tenant_rows(self, tenant: str) -> dict[str, int]:
        sql = "SELECT count(*) FROM consent_events WHERE tenant = ?"
        return {"consent_events": await self._engine.count(sql, (tenant,))}

    def purge_tenant(self, tenant: str) -> Steps:
        return (("DELETE FROM consent_events WHERE tenant = ?", ((tenant,),)),)
