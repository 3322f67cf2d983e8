"""The pytest plugin as a user gets it: installed, found through its entry point, used by a suite.

tests/plugin_suite is such a suite, with its own pytest.ini and no access to this
project's tests; pytester runs it in a fresh interpreter, as ``pytest`` would.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

SUITE = Path(__file__).resolve().parent / "plugin_suite"


def test_the_plugin_is_registered_through_the_pytest11_entry_point() -> None:
    (entry,) = [e for e in importlib.metadata.entry_points(group="pytest11") if e.name == "smsgw"]
    assert entry.value == "gateway.testing.plugin"


def test_a_user_suite_runs_on_the_plugin_alone(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        "-c", str(SUITE / "pytest.ini"), "--rootdir", str(SUITE), str(SUITE),
        "-p", "no:cacheprovider", "-v",
        timeout=120,
    )  # fmt: skip
    result.assert_outcomes(passed=9)
    result.stdout.fnmatch_lines(
        [
            "*test_async.py::test_an_async_send_reaches_the_handset_inbox PASSED*",
            "*test_config.py::test_the_module_config_is_merged_over_the_defaults PASSED*",
            "*test_sync.py::test_a_sent_message_reaches_the_handset_inbox PASSED*",
        ]
    )
