"""Storage: group-commit engines, the schemas, and one repository per group of tables.

- `base`: what a backend provides (the engine's and each repository's interface, as
  Protocols) and the steps a write is made of. Callers depend on these only.
- `engine`: group commit (an ordered list of units of steps per commit, refused unit
  by unit), and its SQLite engine: the writer on a thread, two readers. It knows no
  table. `pg_engine`: the PostgreSQL engine (asyncpg), the same group commit.
- `dialect`: the few phrases SQLite's and PostgreSQL's SQL spell differently.
- `schema`: the SQLite migrations; `pg_schema`: the PostgreSQL ones, the ``store``
  track of `pg_migrations` (versioned per component, shared by the instances).
- `traffic` (messages, daily_counts), `inbox`, `inbound`, `notices`, `consent`
  (consent_events), `audit` (audit_log, audit_heads): the repositories, one set for
  both backends, each the only module that writes SQL against its tables
  (tests/test_storage_layout.py checks).

`gateway.store.Store` opens the configured backend's engine and the repositories.
"""
