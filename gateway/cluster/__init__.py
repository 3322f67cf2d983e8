"""Several gateway instances on one PostgreSQL store, behaving as one gateway.

Each instance has an id (`instance.instance_id`). What one instance did and another must
know (a bind, an opt-out, a notice for a receiver bound elsewhere, an event) goes
through the shared database and its notifications; with the SQLite store there is one
instance and nothing here runs.
"""
