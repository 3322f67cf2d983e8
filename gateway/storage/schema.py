"""The SQLite schema: every table, as the migrations that built it, oldest first.

Only migrations write DDL; each table's statements belong to its repository.
"""

from __future__ import annotations

import sqlite3

# Each entry upgrades the schema by one version; PRAGMA user_version records how far we are.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        interface TEXT NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        purpose TEXT NOT NULL,
        segments INTEGER NOT NULL,
        encoding TEXT NOT NULL,
        status TEXT NOT NULL,
        client_ref TEXT,
        callback_url TEXT,
        submitted_at REAL NOT NULL,
        enroute_at REAL,
        final_at REAL,
        error TEXT
    ) WITHOUT ROWID;
    CREATE INDEX messages_by_tenant ON messages (tenant, id);
    CREATE INDEX messages_by_recipient ON messages (tenant, recipient, id);
    CREATE TABLE outbox (
        message_id TEXT PRIMARY KEY,
        body TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE inbox (
        seq INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL,
        msisdn TEXT NOT NULL,
        message_id TEXT NOT NULL,
        sender TEXT NOT NULL,
        body TEXT NOT NULL,
        received_at REAL NOT NULL
    );
    CREATE INDEX inbox_by_handset ON inbox (tenant, msisdn, seq);
    """,
    # SMPP: receipts on request, concatenated parts, notices kept for unbound receivers.
    """
    ALTER TABLE messages ADD COLUMN receipt INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE outbox ADD COLUMN part_ref INTEGER;
    ALTER TABLE outbox ADD COLUMN part_seq INTEGER;
    ALTER TABLE outbox ADD COLUMN part_total INTEGER;
    ALTER TABLE inbox ADD COLUMN part_ref INTEGER;
    ALTER TABLE inbox ADD COLUMN part_seq INTEGER;
    ALTER TABLE inbox ADD COLUMN part_total INTEGER;
    CREATE TABLE notices (
        id INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL,
        kind TEXT NOT NULL,
        message_id TEXT NOT NULL,
        handset TEXT NOT NULL,
        address TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        status TEXT,
        error TEXT,
        submitted_at REAL,
        body TEXT NOT NULL
    );
    CREATE INDEX notices_by_tenant ON notices (tenant, id);
    """,
    # Privacy: the consent / opt-out registry (append-only events, subjects as keyed
    # pseudonyms) and the hash-chained audit log with one head per tenant.
    """
    CREATE TABLE consent_events (
        seq INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL,
        subject TEXT NOT NULL,
        kind TEXT NOT NULL,
        purpose TEXT,
        sender TEXT,
        source TEXT NOT NULL,
        evidence TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX consent_by_subject ON consent_events (tenant, subject, seq);
    CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT,
        salt TEXT,
        commitment TEXT NOT NULL,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX audit_by_subject ON audit_log (tenant, subject) WHERE subject IS NOT NULL;
    CREATE INDEX audit_by_tenant ON audit_log (tenant, seq);
    CREATE TABLE audit_heads (
        tenant TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
    # Retention: pseudonymised rows name their key epoch; identifiable rows are found
    # through a partial index; anonymous daily counts outlive deleted rows.
    """
    ALTER TABLE messages ADD COLUMN pseudonym_epoch TEXT;
    CREATE INDEX messages_identifiable ON messages (id) WHERE pseudonym_epoch IS NULL;
    CREATE INDEX messages_by_epoch ON messages (tenant, pseudonym_epoch)
        WHERE pseudonym_epoch IS NOT NULL;
    CREATE INDEX inbox_by_time ON inbox (received_at);
    CREATE TABLE daily_counts (
        day TEXT NOT NULL,
        tenant TEXT NOT NULL,
        interface TEXT NOT NULL,
        status TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (day, tenant, interface, status)
    ) WITHOUT ROWID;
    """,
    # A kept mobile-originated notice remembers the keyword it matched (for its TLV).
    """
    ALTER TABLE notices ADD COLUMN keyword TEXT;
    """,
    # Data-subject requests find a number as sender too, and kept notices by handset,
    # through an index each instead of a scan of the tenant's rows.
    """
    CREATE INDEX messages_by_sender ON messages (tenant, sender, id);
    CREATE INDEX notices_by_handset ON notices (tenant, handset, id);
    """,
    # What handsets sent to a tenant's numbers (MO), for GET /v1/inbound; each row is
    # kept for privacy.body_ttl. Ids are time-ordered, so (tenant, id) pages newest first.
    """
    CREATE TABLE inbound (
        message_id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        handset TEXT NOT NULL,
        address TEXT NOT NULL,
        body TEXT NOT NULL,
        keyword TEXT,
        received_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX inbound_by_tenant ON inbound (tenant, message_id);
    CREATE INDEX inbound_by_handset ON inbound (tenant, handset, message_id);
    CREATE INDEX inbound_by_time ON inbound (received_at);
    """,
    # Every data_coding: a message's class and 8-bit bodies, in the traffic log and the
    # inbox; a submit_multi's destinations name it, found through a partial index.
    """
    ALTER TABLE messages ADD COLUMN message_class INTEGER;
    ALTER TABLE messages ADD COLUMN submission TEXT;
    ALTER TABLE inbox ADD COLUMN binary INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE inbox ADD COLUMN message_class INTEGER;
    CREATE INDEX messages_by_submission ON messages (tenant, submission)
        WHERE submission IS NOT NULL;
    """,
    # Scheduled and expiring messages: when each is due and when its validity ends.
    """
    ALTER TABLE messages ADD COLUMN send_at REAL;
    ALTER TABLE messages ADD COLUMN expires_at REAL;
    """,
    # Instances sharing a store claim the notices they hold in memory, under a lease
    # (`smpp.notices`); one SQLite process never does, and the columns stay NULL.
    """
    ALTER TABLE notices ADD COLUMN claimed_by TEXT;
    ALTER TABLE notices ADD COLUMN claimed_until REAL;
    CREATE INDEX notices_by_claim ON notices (claimed_by) WHERE claimed_by IS NOT NULL;
    """,
    # Instances sharing a store hold the messages on their way under a lease too
    # (`gateway.pipeline`); one SQLite process never does, and the columns stay NULL.
    """
    ALTER TABLE outbox ADD COLUMN owner TEXT;
    ALTER TABLE outbox ADD COLUMN owned_until REAL;
    CREATE INDEX outbox_by_owner ON outbox (owner) WHERE owner IS NOT NULL;
    """,
    # A message's body (and part, and lease) moves onto its row, two row writes a message
    # fewer; the final state clears them (`gateway.storage.traffic`). Messages on their
    # way are found through a partial index. What a final message left in the outbox (no
    # release wrote that) is not copied: its body would stay in the traffic log.
    """
    ALTER TABLE messages ADD COLUMN body TEXT;
    ALTER TABLE messages ADD COLUMN part_ref INTEGER;
    ALTER TABLE messages ADD COLUMN part_seq INTEGER;
    ALTER TABLE messages ADD COLUMN part_total INTEGER;
    ALTER TABLE messages ADD COLUMN owner TEXT;
    ALTER TABLE messages ADD COLUMN owned_until REAL;
    UPDATE messages SET body = o.body, part_ref = o.part_ref, part_seq = o.part_seq,
        part_total = o.part_total, owner = o.owner, owned_until = o.owned_until
    FROM outbox AS o
    WHERE o.message_id = messages.id AND messages.status IN ('accepted', 'scheduled', 'enroute');
    DROP TABLE outbox;
    CREATE INDEX messages_unfinished ON messages (id) WHERE body IS NOT NULL;
    CREATE INDEX messages_by_owner ON messages (owner) WHERE owner IS NOT NULL;
    """,
)


def migrate(db: sqlite3.Connection) -> None:
    """Bring the database up to the last migration, one transaction per migration."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
