"""bench.scale_out keeps running: a tiny run fills every row, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_bench_curves import run_bench, tables


@pytest.mark.slow
@pytest.mark.postgres
def test_a_tiny_run_fills_every_row_with_figures(tmp_path: Path) -> None:
    markdown = tmp_path / "scale-out.md"
    args = ["--instances", "1", "2", "--messages", "64", "--http-messages", "32", "--markdown"]
    result = run_bench("scale_out", *args, str(markdown))
    found = tables(markdown.read_text())
    assert len(found) == 2
    for title, rows in found.items():
        assert title in result.stdout  # the plain tables carry the same rows
        configurations = [(row["store"], row["instances"]) for row in rows]
        assert configurations == [("sqlite", "1"), ("postgres", "1"), ("postgres", "2")]
        for row in rows:
            assert row.pop("refused", "0") == "0", row
            assert float(row["msg/s"].replace(",", "")) > 0, row
            # CPU time counts in clock ticks: a tiny run may spend less than one.
            assert float(row["gateways CPU µs/msg"]) >= 0, row
            database = row["PostgreSQL CPU µs/msg"]
            assert (database == "-") == (row["store"] == "sqlite"), row
