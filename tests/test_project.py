"""The project's own promises: the README's commands, CI, lint."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    return [b for b in blocks if "python3 -m venv" in b]


def test_ci_runs_the_readme_test_command() -> None:
    serve, test = readme_commands()[:2]
    assert "smsgw serve --config config.toml" in serve
    assert "pytest" in test
    assert "python -m mypy &&" in test
    assert test.index("python -m mypy") < test.index("python -m pytest")  # types first
    assert test in (ROOT / ".ci" / "run").read_text().splitlines()
    # What the tests drive beyond Python is installed first: Prometheus, the interop
    # clients, and the browser for the web inbox's tests.
    for script in ("ensure-prometheus", "ensure-interop", "ensure-browser"):
        assert f"scripts/{script} &&" in test
        assert (ROOT / "scripts" / script).stat().st_mode & 0o111


def test_ruff_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
