"""Config loading: the shipped file works; every bad file exits 2 naming the key."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Outcome, StopScope, Synchronous, load_config, parse_duration
from gateway.server.cli import main

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
[storage]
path = "var/x.sqlite3"
[[tenants]]
id = "a"
api_keys = ["key-aaaaaaaa"]
senders = ["App"]
smpp = { system_id = "a", password = "pw" }
"""


def test_shipped_config_loads() -> None:
    config = load_config(ROOT / "config.toml")
    assert config.http.port == 8080
    assert config.privacy.retention.pseudonymise_after == 30 * 86400
    assert config.simulator.latency == (0.05, 0.5)
    assert {r.outcome for r in config.simulator.rules} == set(Outcome)
    assert [t.id for t in config.tenants] == ["demo"]


def test_defaults_apply(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(GOOD)
    config = load_config(path)
    assert config.http.max_batch == 1000
    assert config.callbacks.allowed_hosts == ("127.0.0.1", "::1", "localhost")
    assert config.tenants[0].default_purpose == "transactional"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("2s", 2.0), ("15m", 900.0), ("1h", 3600.0), ("30d", 2592000.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def _with(extra: str) -> str:
    return GOOD + extra


BAD: list[tuple[str, str, str]] = [
    ("unknown top-level key", GOOD + "\n[htttp]\nport = 1\n", "htttp: unknown key"),
    ("unknown nested key", "[http]\nprot = 1\n" + GOOD, "http.prot: unknown key"),
    ("wrong type", '[http]\nport = "80"\n' + GOOD, "http.port: expected an integer"),
    ("port range", "[http]\nport = 70000\n" + GOOD, "http.port: must be 0-65535"),
    ("log format", '[log]\nformat = "xml"\n' + GOOD, "log.format: must be one of text, json"),
    ("log level", '[log]\nlevel = "loud"\n' + GOOD, "log.level: must be one of debug, info"),
    (
        "bad duration",
        '[privacy.retention]\ninterval = "soon"\n' + GOOD,
        "privacy.retention.interval: not a duration",
    ),
    (
        "duration as number",
        "[privacy.retention]\ninterval = 5\n" + GOOD,
        "privacy.retention.interval: expected a duration string",
    ),
    (
        "bad outcome",
        GOOD + '\n[[simulator.rules]]\nprefix = "+46"\noutcome = "lost"\n',
        "simulator.rules[0].outcome: must be one of",
    ),
    (
        "rule without target",
        GOOD + '\n[[simulator.rules]]\noutcome = "expired"\n',
        "simulator.rules[0]: give exactly one of prefix or number",
    ),
    (
        "missing password",
        _with(
            '[[tenants]]\nid = "b"\napi_keys = ["key-bbbbbbbb"]\nsenders = ["B"]\n'
            'smpp = { system_id = "b" }\n'
        ),
        "tenants[1].smpp.password: missing",
    ),
    (
        "duplicate tenant",
        _with('[[tenants]]\nid = "a"\napi_keys = ["key-bbbbbbbb"]\nsenders = ["B"]\n'),
        "tenants[1].id: duplicate tenant id",
    ),
    (
        "duplicate api key",
        _with('[[tenants]]\nid = "b"\napi_keys = ["key-aaaaaaaa"]\nsenders = ["B"]\n'),
        "tenants[1].api_keys[0]: duplicate API key",
    ),
    (
        "bad sender",
        _with(
            '[[tenants]]\nid = "b"\napi_keys = ["key-bbbbbbbb"]\n'
            'senders = ["Way too long sender"]\n'
        ),
        "tenants[1].senders[0]: an alphanumeric sender",
    ),
    ("no tenants", "[http]\nport = 1\n", "tenants: at least one tenant is needed"),
    (
        "latency order",
        '[simulator]\nlatency = ["2s", "1s"]\n' + GOOD,
        "simulator.latency: expected",
    ),
    ("not toml", "[http\n", "not valid TOML"),
    (
        "synchronous",
        GOOD.replace("[storage]", '[storage]\nsynchronous = "off"'),
        "storage.synchronous: must be one of normal, full, got 'off'",
    ),
    (
        "stop scope",
        GOOD + 'stop_scope = "all"\n',
        "tenants[0].stop_scope: must be one of tenant, sender, got 'all'",
    ),
    (
        "default country",
        GOOD + 'default_country = "XX"\n',
        "tenants[0].default_country: use an ISO 3166 code such as SE",
    ),
    (
        "negative submit rate",
        GOOD + "max_submit_rate = -1\n",
        "tenants[0].max_submit_rate: must not be negative",
    ),
    (
        "submit rate twice",
        GOOD.replace('pw" }', 'pw", max_submit_rate = 5 }') + "max_submit_rate = 10\n",
        "tenants[0].smpp.max_submit_rate: set max_submit_rate once, at the tenant",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"{path}: {expected}")


def test_duplicate_key_given_as_digest(tmp_path: Path, capsys: Any) -> None:
    digest = hashlib.sha256(b"key-aaaaaaaa").hexdigest()
    path = tmp_path / "config.toml"
    path.write_text(
        _with(f'[[tenants]]\nid = "b"\napi_keys = ["sha256:{digest}"]\nsenders = ["B"]\n')
    )
    assert main(["serve", "--config", str(path)]) == 2
    assert "tenants[1].api_keys[0]: duplicate API key" in capsys.readouterr().err


def test_missing_file_exits_2(tmp_path: Path, capsys: Any) -> None:
    assert main(["serve", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_choices_load_as_their_enums(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        GOOD.replace("[storage]", '[storage]\nsynchronous = "full"') + 'stop_scope = "sender"\n'
    )
    config = load_config(path)
    assert config.storage.synchronous is Synchronous.FULL
    assert config.tenants[0].stop_scope is StopScope.SENDER


@pytest.mark.parametrize("line", ["", 'default_country = ""\n'], ids=["omitted", "empty"])
def test_no_default_country_is_none(tmp_path: Path, line: str) -> None:
    """Older configs wrote "" for none; both that and leaving the key out mean None."""
    path = tmp_path / "c.toml"
    path.write_text(GOOD + line)
    assert load_config(path).tenants[0].default_country is None
