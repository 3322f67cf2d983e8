"""Storage: a group-commit engine, the schema, and one repository per group of tables.

- `base`: what a backend provides (the engine's and each repository's interface, as
  Protocols) and the steps a write is made of. Callers depend on these only.
- `engine`: SQLite group commit: an ordered list of units of steps per commit on a
  writer thread, and the readers. It knows no table.
- `schema`: the SQLite migrations.
- `traffic` (messages, outbox, daily_counts), `inbox`, `inbound`, `notices`, `consent`
  (consent_events), `audit` (audit_log, audit_heads): the SQLite repositories, each the
  only module that writes SQL against its tables (tests/test_storage_layout.py checks).

`gateway.store.Store` opens a backend and holds its repositories. A second backend
(PostgreSQL) is a second set of these classes behind the same Protocols.
"""
