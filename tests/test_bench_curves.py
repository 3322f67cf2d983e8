"""bench.curves keeps running: a tiny `--quick` run fills every row of every curve."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SIZES = ("10", "100", "1,000")


def tables(markdown: str) -> dict[str, list[dict[str, str]]]:
    """Each `### title` table of the Markdown as rows keyed by column."""
    found = {}
    for section in markdown.split("### ")[1:]:
        title, _, body = section.partition("\n")
        lines = [line for line in body.splitlines() if line.startswith("|")]
        columns = [cell.strip() for cell in lines[0].strip("|").split("|")]
        found[title] = [
            dict(zip(columns, [cell.strip() for cell in line.strip("|").split("|")], strict=True))
            for line in lines[2:]
        ]
    return found


def run_bench(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m bench.<module> args`` from the repository root; it must succeed."""
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.mark.slow
def test_a_quick_run_fills_every_row_with_figures(tmp_path: Path) -> None:
    markdown = tmp_path / "curves.md"
    sizes = [size.replace(",", "") for size in SIZES]
    args = ["--quick", "--messages", "128", "--http-messages", "64", "--sizes"]
    result = run_bench("curves", *args, *sizes, "--markdown", str(markdown))
    found = tables(markdown.read_text())
    by_sessions, by_window, by_size = found.values()
    assert [row["sessions"] for row in by_sessions] == ["1", "4", "16", "64"]
    assert {row["window"] for row in by_sessions} == {"64"}
    assert [row["window"] for row in by_window] == ["1", "10", "64", "500"]
    assert {row["sessions"] for row in by_window} == {"1"}
    assert [row["known subjects"] for row in by_size] == list(SIZES)
    for row in by_sessions + by_window + by_size:
        refused = row.pop("refused", "0")
        assert refused == "0", row
        # A filter of a few hundred subjects builds in under 5 ms: "0.00" to two places.
        assert float(row.pop("filter build s", "0")) >= 0, row
        assert all(float(cell.replace(",", "")) > 0 for cell in row.values()), row
    # The plain tables carry the same rows.
    for title in found:
        assert title in result.stdout
