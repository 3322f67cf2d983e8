"""The traffic repository: messages and daily_counts.

A message's row holds its body (and part) only while the simulated network still
needs it: the statement that records its final state clears them, so the traffic
log keeps no body of a final message (a handset's ``inbox`` holds what it received).
The body used to move through a table of its own (``outbox``), one row inserted and
one deleted a message: on the row, a message's whole write set costs 33 us of SQLite
work instead of 67 (commits of 28 messages on a fresh database). Messages on their
way are found through the partial index ``messages_unfinished``; when instances share
the store, the one that plays a message out holds it under a lease (``owner``,
``owned_until``), also cleared by the final state. Retention pseudonymises old rows
in place, then deletes them after adding them to the anonymous ``daily_counts``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from gateway.domain import Message, MessageFilter, Outgoing, Part, Status, StatusChange
from gateway.ids import id_floor
from gateway.storage.base import (
    AfterCommit,
    Batched,
    HandsetActivity,
    Identifiable,
    Pseudonymised,
    Rows,
    Steps,
)
from gateway.storage.dialect import Dialect
from gateway.storage.engine import GroupCommit
from gateway.storage.rows import RowMapping

MESSAGE_ROWS = RowMapping(Message)
message_from_row = MESSAGE_ROWS.from_row
_message_row = MESSAGE_ROWS.to_row
MESSAGE_COLUMNS = ", ".join(MESSAGE_ROWS.columns)
_FINAL = tuple(s.value for s in Status if s.is_final)


def _last_per_message(rows: Rows) -> Rows:
    """One UPDATE row per message (its id last in each row), the last queued winning.

    Two rows for the same message in one UPDATE ... FROM would apply only one of them,
    which one unspecified.
    """
    return list({row[-1]: row for row in rows}.values())


# What a message's row holds beside its `Message` fields while it is on its way.
ON_ITS_WAY = ("body", "part_ref", "part_seq", "part_total", "owner", "owned_until")
INSERT_MESSAGE = Batched(
    f"INSERT INTO messages ({MESSAGE_COLUMNS}, {', '.join(ON_ITS_WAY)}) VALUES {{values}}"
)
# A message handed over after its commit (scheduled, or resumed from an earlier version).
UPDATE_STATUS = Batched(
    "UPDATE messages SET status = v.column1, enroute_at = v.column2"
    " FROM (VALUES {values}) AS v WHERE messages.id = v.column3",
    _last_per_message,
    types=("text", "float8", "text"),
)
# Never a final message's: a replace_sm racing the final state leaves no body behind.
REPLACE_BODY = Batched(
    "UPDATE messages SET body = v.column1 FROM (VALUES {values}) AS v"
    " WHERE messages.id = v.column2 AND messages.body IS NOT NULL",
    _last_per_message,
)
# The final state, and what the message held on its way gone in the same row write.
_CLEARED = ", ".join(f"{column} = NULL" for column in ON_ITS_WAY)
FINISH = Batched(
    f"UPDATE messages SET status = v.column1, final_at = v.column2, error = v.column3, {_CLEARED}"
    " FROM (VALUES {values}) AS v WHERE messages.id = v.column4",
    _last_per_message,
    types=("text", "float8", "text", "text"),
)

# `Pseudonymised` rows as they are (their fields are in this order), all in one
# statement on SQLite: executemany steps once a row, and the writer thread must take
# the GIL back from the busy event loop after each step (2,000 rows: 0.1 to 10 s
# under load).
PSEUDONYMISE = Batched(
    """
    UPDATE messages SET recipient = v.column1, sender = v.column2, client_ref = v.column3,
        callback_url = NULL, submitted_at = v.column4, enroute_at = v.column5,
        final_at = v.column6, pseudonym_epoch = v.column7
    FROM (VALUES {values}) AS v
    WHERE messages.id = v.column8 AND messages.pseudonym_epoch IS NULL
    """,
    types=("text", "text", "text", "float8", "float8", "float8", "text", "text"),
)
_IDENTIFIABLE = (
    "SELECT id, tenant, sender, recipient, client_ref, submitted_at, enroute_at, final_at"
    " FROM messages{indexed_by}"
    " WHERE pseudonym_epoch IS NULL AND id > ? AND id < ?"
    f" AND status IN ({', '.join('?' * len(_FINAL))}) ORDER BY id LIMIT ?"
)
_COUNT_DELETED = """
    INSERT INTO daily_counts (day, tenant, interface, status, count)
    SELECT {day}, tenant, interface, status, count(*)
    FROM messages WHERE id IN ({ids}) GROUP BY 1, 2, 3, 4
    ON CONFLICT (day, tenant, interface, status)
    DO UPDATE SET count = daily_counts.count + excluded.count
"""
_TENANT_TABLES = ("messages", "daily_counts")


class TrafficRepository:
    def __init__(self, engine: GroupCommit) -> None:
        self._engine = engine
        dialect = engine.dialect
        self._count_deleted = _COUNT_DELETED.replace("{day}", dialect.day("submitted_at"))
        self._identifiable = dialect.indexed_by("messages_identifiable")
        self._unfinished = dialect.indexed_by("messages_unfinished")
        self._body_holds = dialect.contains("lower(body)", "lower(?)")

    # --- the path of traffic ------------------------------------------------------------

    async def add_messages(
        self, items: Sequence[Outgoing], held: tuple[str, float] | None = None
    ) -> None:
        """Persist new messages with their bodies; returns once they are committed.

        ``held`` is ``(owner, until)`` when instances share the store: the instance that
        will play the messages out holds them until then (it renews the lease).
        """
        owner, until = held or (None, None)
        rows = [
            (*_message_row(item.message), item.body, *part_columns(item.part), owner, until)
            for item in items
        ]
        await self._engine.commit("add_messages", ((INSERT_MESSAGE, rows),))

    def record_status(self, change: StatusChange, after_commit: AfterCommit = None) -> None:
        """Queue a transition; ``after_commit`` runs once it is durable."""
        self._engine.queue("record_status", self.status_steps(change), after_commit)

    def status_steps(self, change: StatusChange) -> Steps:
        """The steps that record a transition (a final one clears the body with it), for a
        unit that commits it with other repositories' writes (`gateway.network`)."""
        # A StrEnum status binds as its value without the .value property.
        if change.status.is_final:
            return ((FINISH, ((change.status, change.at, change.error, change.message_id),)),)
        return ((UPDATE_STATUS, ((change.status, change.at, change.message_id),)),)

    def replace_body(self, message_id: str, body: str) -> None:
        self._engine.queue("replace_body", ((REPLACE_BODY, ((body, message_id),)),))

    def reschedule(self, message_id: str, send_at: float, expires_at: float) -> None:
        """Queue a scheduled message's new time and validity end (replace_sm)."""
        self._engine.queue(
            "reschedule",
            (
                (
                    "UPDATE messages SET send_at = ?, expires_at = ? WHERE id = ?",
                    ((send_at, expires_at, message_id),),
                ),
            ),
        )

    async def get_message(self, tenant: str, message_id: str) -> Message | None:
        row = await self._engine.fetch_one(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ? AND tenant = ?",
            (message_id, tenant),
        )
        return message_from_row(row) if row else None

    async def submission(self, tenant: str, submission: str) -> list[Message]:
        """The messages of one submit_multi (through messages_by_submission)."""
        rows = await self._engine.fetch(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant = ? AND submission = ?"
            " ORDER BY id",
            (tenant, submission),
        )
        return [message_from_row(row) for row in rows]

    async def list_messages(
        self,
        tenant: str,
        *,
        recipient: str | None = None,
        sender: str | None = None,
        status: Status | None = None,
        since_id: str | None = None,
        before_id: str | None = None,
        limit: int = 100,
        narrow: MessageFilter | None = None,
    ) -> list[Message]:
        """Newest first; ids are time-ordered, so id bounds express ``since`` and cursors."""
        clauses = ["tenant = ?"]
        params: list[object] = [tenant]
        for clause, value in (
            ("recipient = ?", recipient),
            ("sender = ?", sender),
            ("status = ?", status.value if status else None),
            ("id >= ?", since_id),
            ("id < ?", before_id),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if narrow is not None:
            _narrow(narrow, clauses, params)
        params.append(limit)
        sql = (
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {' AND '.join(clauses)}"
            " ORDER BY id DESC LIMIT ?"
        )
        return [message_from_row(row) for row in await self._engine.fetch(sql, params)]

    def forget_message(self, tenant: str, message_id: str) -> Steps:
        """Delete one message of the tenant from the traffic log (a Twilio DELETE).

        For a final message only (the caller checks): its row holds no body. It is added to
        the anonymous daily counts first, as retention's deletions are.
        """
        return (
            (self._count_deleted.format(ids="?"), ((message_id,),)),
            ("DELETE FROM messages WHERE id = ? AND tenant = ?", ((message_id, tenant),)),
        )

    async def pending_bodies(
        self, tenant: str, message_ids: Sequence[str]
    ) -> dict[str, tuple[str, Part | None]]:
        """The bodies (and parts) of those of the messages still on their way."""
        if not message_ids:
            return {}
        marks = ", ".join("?" * len(message_ids))
        rows = await self._engine.fetch(
            "SELECT id, body, part_ref, part_seq, part_total FROM messages"
            f" WHERE id IN ({marks}) AND tenant = ? AND body IS NOT NULL",
            (*message_ids, tenant),
        )
        return {row[0]: (row[1], part(*row[2:])) for row in rows}

    async def pending_with_text(self, tenant: str, text: str, limit: int) -> list[str]:
        """Ids of the tenant's messages still on their way whose body holds ``text``."""
        rows = await self._engine.fetch(
            f"SELECT id FROM messages{self._unfinished}"
            f" WHERE body IS NOT NULL AND tenant = ? AND {self._body_holds} LIMIT ?",
            (tenant, text, limit),
        )
        return [row[0] for row in rows]

    async def adopt_unfinished(
        self, owner: str, now: float, until: float, limit: int
    ) -> list[Outgoing]:
        """Shared store: take up to ``limit`` messages on their way that no instance holds
        (held by none, or a lease that lapsed: its instance died), skipping rows another
        instance is taking at this moment. PostgreSQL only."""
        rows = await self._engine.fetch(
            "WITH taken AS (UPDATE messages SET owner = ?, owned_until = ? WHERE id IN ("
            "SELECT id FROM messages WHERE body IS NOT NULL"
            " AND (owner IS NULL OR owned_until < ?) LIMIT ? FOR UPDATE SKIP LOCKED)"
            f" RETURNING {_UNFINISHED_COLUMNS})"
            " SELECT * FROM taken ORDER BY id",
            (owner, until, now, limit),
        )
        return [_unfinished_from_row(row) for row in rows]

    async def renew_held(self, owner: str, until: float) -> None:
        """Extend the lease of every message ``owner`` holds to ``until``."""
        await self._engine.commit(
            "renew_held",
            (("UPDATE messages SET owned_until = ? WHERE owner = ?", ((until, owner),)),),
        )

    async def release_held(self, owner: str) -> None:
        """``owner`` stops: the messages it held are anyone's to play out."""
        await self._engine.commit(
            "release_held",
            (
                (
                    "UPDATE messages SET owner = NULL, owned_until = NULL WHERE owner = ?",
                    ((owner,),),
                ),
            ),
        )

    async def release_earlier_runs(self, runs: str, owner: str) -> None:
        """Give back the messages held by runs of this instance (owners starting ``runs``)
        other than ``owner``, this one: the instance restarted, so they are dead, and
        what they held is played out now instead of when their lease lapses."""
        await self._engine.commit(
            "release_held",
            (
                (
                    "UPDATE messages SET owner = NULL, owned_until = NULL"
                    " WHERE owner IS NOT NULL AND substr(owner, 1, ?) = ? AND owner <> ?",
                    ((len(runs), runs, owner),),
                ),
            ),
        )

    async def unfinished(self) -> list[Outgoing]:
        """Messages accepted but not final (their rows still hold their bodies)."""
        rows = await self._engine.fetch(
            f"SELECT {_UNFINISHED_COLUMNS} FROM messages{self._unfinished}"
            " WHERE body IS NOT NULL ORDER BY id"
        )
        return [_unfinished_from_row(row) for row in rows]

    # --- data-subject requests ----------------------------------------------------------

    async def subject_messages(self, tenant: str, names: Sequence[str]) -> list[Message]:
        """Rows that hold any of ``names`` (a number, its pseudonyms) as recipient or sender."""
        ids, params = _subject_ids(tenant, names)
        rows = await self._engine.fetch_bulk(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id IN ({ids}) ORDER BY id", params
        )
        return [message_from_row(row) for row in rows]

    async def count_subject(self, tenant: str, names: Sequence[str]) -> int:
        ids, params = _subject_ids(tenant, names)
        return await self._engine.count(f"SELECT count(*) FROM ({ids}) AS found", params)

    def erase_subject(self, tenant: str, names: Sequence[str]) -> Steps:
        """The steps that delete those rows (with the bodies of those on their way)."""
        ids, params = _subject_ids(tenant, names)
        return ((f"DELETE FROM messages WHERE id IN ({ids})", (params,)),)

    # --- retention ----------------------------------------------------------------------

    async def oldest_identifiable(self) -> float | None:
        """Submit time of the oldest row not pseudonymised yet."""
        rows = await self._engine.fetch_bulk(
            f"SELECT submitted_at FROM messages{self._identifiable}"
            " WHERE pseudonym_epoch IS NULL ORDER BY id LIMIT 1"
        )
        return float(rows[0][0]) if rows else None

    async def pseudonymise(self, rows: Sequence[Pseudonymised]) -> None:
        """Replace the identifiers and times of rows (each once: a second run skips it)."""
        if rows:
            await self._engine.commit("pseudonymise", ((PSEUDONYMISE, rows),))

    async def delete_submitted_before(self, cutoff: float, limit: int) -> int:
        """Delete up to ``limit`` rows submitted before ``cutoff``, counted into daily_counts.

        Returns how many went; 0 means none is left.
        """
        rows = await self._engine.fetch_bulk(
            "SELECT id FROM messages WHERE id < ? ORDER BY id LIMIT ?", (id_floor(cutoff), limit)
        )
        if not rows:
            return 0
        ids = tuple(row[0] for row in rows)
        await self._engine.commit(
            "delete_old",
            (
                (self._count_deleted.format(ids=", ".join("?" * len(ids))), (ids,)),
                ("DELETE FROM messages WHERE id = ?", rows),
            ),
        )
        return len(ids)

    async def epoch_in_use(self, tenant: str, epoch: str) -> bool:
        """Whether any row is pseudonymised under this key epoch."""
        rows = await self._engine.fetch_bulk(
            "SELECT 1 FROM messages WHERE tenant = ? AND pseudonym_epoch = ? LIMIT 1",
            (tenant, epoch),
        )
        return bool(rows)

    # --- a simulator reset (test environments) -------------------------------------------

    def end_unfinished(self, tenant: str, at: float, error: str) -> Steps:
        """The steps that end the tenant's messages still on their way ``deleted``, bodies gone.

        For when the network dropped them from memory: without this they would resume at
        the next start.
        """
        return (
            (
                f"UPDATE messages{self._unfinished} SET status = ?, final_at = ?, error = ?,"
                f" {_CLEARED} WHERE body IS NOT NULL AND tenant = ?",
                ((Status.DELETED.value, at, error, tenant),),
            ),
        )

    def erase_messages(self, tenant: str) -> Steps:
        """The steps that delete the tenant's traffic log and bodies (not its daily counts)."""
        return (("DELETE FROM messages WHERE tenant = ?", ((tenant,),)),)

    # --- the simulator's handset list ---------------------------------------------------

    async def recipients(self, tenant: str, since_id: str, limit: int) -> list[HandsetActivity]:
        """The ``limit`` numbers the tenant sent to last (ids from ``since_id``, identifiable)."""
        rows = await self._engine.fetch(
            "SELECT recipient, count(*), max(submitted_at) FROM messages"
            " WHERE tenant = ? AND id >= ? AND pseudonym_epoch IS NULL"
            " GROUP BY recipient ORDER BY 3 DESC LIMIT ?",
            (tenant, since_id, limit),
        )
        return [HandsetActivity(*row) for row in rows]

    async def recipient_counts(
        self, tenant: str, since_id: str, msisdns: Sequence[str]
    ) -> dict[str, int]:
        """Messages (ids from ``since_id``) per number, for those of ``msisdns`` sent to."""
        marks = ", ".join("?" * len(msisdns))
        rows = await self._engine.fetch(
            f"SELECT recipient, count(*) FROM messages WHERE tenant = ? AND id >= ?"
            f" AND recipient IN ({marks}) GROUP BY recipient",
            (tenant, since_id, *msisdns),
        )
        return dict(rows)

    # --- offboarding --------------------------------------------------------------------

    async def tenant_rows(self, tenant: str) -> dict[str, int]:
        return {
            table: await self._engine.count(
                f"SELECT count(*) FROM {table} WHERE tenant = ?", (tenant,)
            )
            for table in _TENANT_TABLES
        }

    def purge_tenant(self, tenant: str) -> Steps:
        return tuple(
            (f"DELETE FROM {table} WHERE tenant = ?", ((tenant,),)) for table in _TENANT_TABLES
        )


def _subject_ids(tenant: str, names: Sequence[str]) -> tuple[str, tuple[object, ...]]:
    """A query for the ids of rows holding any of ``names``, with its parameters.

    Two index range scans, one on recipient and one on sender, joined by UNION:
    ``recipient IN (...) OR sender IN (...)`` would read every row of the tenant.
    """
    marks = ", ".join("?" * len(names))
    sql = (
        f"SELECT id FROM messages WHERE tenant = ? AND recipient IN ({marks})"
        f" UNION SELECT id FROM messages WHERE tenant = ? AND sender IN ({marks})"
    )
    return sql, (tenant, *names, tenant, *names)


def _narrow(narrow: MessageFilter, clauses: list[str], params: list[object]) -> None:
    """The search filters of the web inbox's flat list, as SQL clauses."""
    for clause, value in (
        ("interface = ?", narrow.interface),
        ("encoding = ?", narrow.encoding),
        ("id < ?", narrow.until_id),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    if narrow.multipart:
        clauses.append("segments > 1")
    if narrow.ids is not None:
        clauses.append(f"id IN ({', '.join('?' * len(narrow.ids)) or 'NULL'})")
        params.extend(narrow.ids)
    if narrow.errors is not None:
        clauses.append(f"error IN ({', '.join('?' * len(narrow.errors))})")
        params.extend(narrow.errors)


_UNFINISHED_COLUMNS = f"{MESSAGE_COLUMNS}, body, part_ref, part_seq, part_total"


def _unfinished_from_row(row: Sequence[Any]) -> Outgoing:
    """A message on its way, from its row's `Message` columns, body and part."""
    return Outgoing(message_from_row(row[:-4]), row[-4], part(*row[-3:]))


def part_columns(p: Part | None) -> tuple[int | None, int | None, int | None]:
    """A part's (ref, seq, total) columns; all None for a message that is not a part."""
    return (p.ref, p.seq, p.total) if p else (None, None, None)


def part(ref: int | None, seq: int | None, total: int | None) -> Part | None:
    """The part those columns name, if they name one."""
    return None if ref is None or seq is None or total is None else Part(ref, seq, total)


Fetch = Callable[[str, Sequence[object]], Sequence[Sequence[Any]]]


def identifiable_rows(
    fetch: Fetch, dialect: Dialect, cutoff: float, after: str, limit: int
) -> tuple[list[Identifiable], str | None]:
    """Up to ``limit`` final rows after id ``after`` submitted before ``cutoff`` that
    still hold identifiers, oldest first, and the last id looked at (None: no more).

    Synchronous, through a connection of the caller's (``fetch`` runs a query with
    ``?`` placeholders): retention's worker process reads with its own
    (privacy/retention_worker.py), so the scan costs the gateway nothing.
    """
    sql = _IDENTIFIABLE.format(indexed_by=dialect.indexed_by("messages_identifiable"))
    rows = fetch(sql, (after, id_floor(cutoff), *_FINAL, limit))
    if not rows:
        return [], None
    return [Identifiable._make(row) for row in rows if row[5] < cutoff], str(rows[-1][0])
