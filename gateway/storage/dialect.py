"""The few phrases in which SQLite's SQL and PostgreSQL's differ, for the repositories.

Every repository writes its statements once, with ``?`` placeholders (the PostgreSQL
engine numbers them), in the SQL both servers speak. What neither spells the other's
way is here: a substring test, a day from epoch seconds, SQLite's index hints. And
whether rows may get their ids from this process: SQLite's file has one writing
process, PostgreSQL's database is shared by every instance.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    # ``{haystack}`` holds ``{needle}`` (both SQL expressions).
    contains_sql: str
    # The UTC day (YYYY-MM-DD) of ``{seconds}`` since the epoch.
    day_sql: str
    # Appended after a table name to read it through ``{index}``.
    indexed_by_sql: str
    # Several processes insert rows: ids a process assigns come from a block of its own.
    shared: bool

    def contains(self, haystack: str, needle: str) -> str:
        return self.contains_sql.format(haystack=haystack, needle=needle)

    def day(self, seconds: str) -> str:
        return self.day_sql.format(seconds=seconds)

    def indexed_by(self, index: str) -> str:
        return self.indexed_by_sql.format(index=index)


SQLITE = Dialect(
    name="sqlite",
    contains_sql="instr({haystack}, {needle}) > 0",
    day_sql="date({seconds}, 'unixepoch')",
    indexed_by_sql=" INDEXED BY {index}",
    shared=False,
)
# The planner picks the partial index itself; there is no hint to give.
POSTGRES = Dialect(
    name="postgres",
    contains_sql="strpos({haystack}, {needle}) > 0",
    day_sql="to_char(to_timestamp({seconds}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    indexed_by_sql="",
    shared=True,
)
