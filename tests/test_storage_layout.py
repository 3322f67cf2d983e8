"""Each table has one owner: no SQL against it outside its repository module."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

from gateway.storage.base import Batched
from gateway.store import PHASES

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "smpp", "privacy")
OWNERS = {
    "messages": "gateway/storage/traffic.py",
    "daily_counts": "gateway/storage/traffic.py",
    "inbox": "gateway/storage/inbox.py",
    "inbound": "gateway/storage/inbound.py",
    "notices": "gateway/storage/notices.py",
    "consent_events": "gateway/storage/consent.py",
    "audit_log": "gateway/storage/audit.py",
    "audit_heads": "gateway/storage/audit.py",
    "instances": "gateway/cluster/postgres.py",
    "binds": "gateway/cluster/postgres.py",
    "rate_buckets": "gateway/cluster/leases.py",
    "wrapped_keys": "gateway/storage/pg_keys.py",
}
# The migrations create and alter every table, SQLite's and PostgreSQL's.
SCHEMAS = (
    "gateway/storage/schema.py",
    "gateway/storage/pg_schema.py",
    "gateway/cluster/schema.py",
)
# A keyword that names the table after it; "{}" stands for a name formatted in at run time.
TABLE_AFTER = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN|TABLE|ON)\s+(\w+|\{\})")


def strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string literal but docstrings, f-strings with ``{}`` for what they format in."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                found.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):
            text = "".join(
                str(part.value) if isinstance(part, ast.Constant) else "{}" for part in node.values
            )
            found.append((node.lineno, text))
    return found


def misplaced_sql() -> list[str]:
    problems = set()
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = path.relative_to(ROOT).as_posix()
            if module in SCHEMAS:
                continue
            for line, text in strings(ast.parse(path.read_text(), module)):
                for table in TABLE_AFTER.findall(text):
                    if table == "{}" and not module.startswith("gateway/storage/"):
                        problems.add(f"{module}:{line}: a table named at run time")
                    elif table in OWNERS and OWNERS[table] != module:
                        problems.add(f"{module}:{line}: SQL against {table}")
    return sorted(problems)


def test_no_module_but_its_repository_writes_sql_against_a_table() -> None:
    assert misplaced_sql() == []


def test_the_check_sees_sql_in_any_form(tmp_path: Path) -> None:
    source = '''
"""SELECT id FROM messages in a docstring is prose."""
a = "SELECT id FROM inbox WHERE seq = ?"
b = f"DELETE FROM {table} WHERE tenant = ?"
c = ("UPDATE audit_heads SET hash = ?" " WHERE tenant = ?")
'''
    found = [TABLE_AFTER.findall(text) for _, text in strings(ast.parse(source))]
    assert [tables for tables in found if tables] == [["inbox"], ["{}"], ["audit_heads"]]


def test_every_batched_statement_has_its_place_in_a_group_commit() -> None:
    """A batched statement missing from PHASES would fail every fast-path commit."""
    batched = set()
    for path in (ROOT / "gateway" / "storage").glob("*.py"):
        module = importlib.import_module(f"gateway.storage.{path.stem}")
        batched |= {value for value in vars(module).values() if isinstance(value, Batched)}
    assert batched == {phase for phase in PHASES if phase is not None}
    assert PHASES.count(None) == 1, "one place for the plain statements"
