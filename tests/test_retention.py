"""Retention and data-subject rights, with a clock the tests move and the raw SQLite bytes."""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import json
import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from gateway.config import StorageBackend, config_from_dict
from gateway.server.appkeys import KEYS, RETENTION
from gateway.server.cli import main
from gateway.storage import pg_schema
from smpp.pdu import CommandId
from tests.conftest import (
    API_KEY,
    BACKEND,
    EVENT_TIMEOUT,
    OTHER_KEY,
    TEST_DIALECT,
    ManualClock,
    RunningGateway,
    base_config,
    merged,
    running_gateway,
    stored_keys,
    stored_rows,
)
from tests.smpp_clients import RawEsme
from tests.test_consent import inbound, smpp_submit
from tests.test_process import gateway_process, write_toml

DAY = 86400.0
JANUARY = float(calendar.timegm(datetime(2026, 1, 15, 12, 0, tzinfo=UTC).timetuple()))
NUMBERS = ("+46701230001", "+46701230002")
SENDER_NUMBER = "+46700000001"


def spellings(e164: str) -> list[bytes]:
    """The number as it could lie in a file: formatted, national, hashed without a key."""
    digits = e164[1:]
    national = "0" + digits[2:]
    texts = [
        e164,
        digits,
        national,
        f"+{digits[:2]} {digits[2:4]} {digits[4:7]} {digits[7:]}",
        f"{national[:3]}-{national[3:6]} {national[6:8]} {national[8:]}",
    ]
    found = [t.encode() for t in texts] + [t.encode("utf-16-le") for t in texts[:2]]
    for text in (e164, digits):
        for algorithm in ("sha256", "sha1", "md5"):
            digest = hashlib.new(algorithm, text.encode())
            found += [digest.hexdigest().encode(), digest.digest()]
    return found


def raw_bytes(database: Path) -> bytes:
    """The database file and whatever WAL and shared-memory files lie beside it.

    On PostgreSQL, whose files are the server's, every row of every store table as
    text: what the database still holds (docs/privacy.md says what lies beyond).
    """
    if BACKEND is StorageBackend.POSTGRES:
        tables = ", ".join(f"'{table}'" for table in pg_schema.TABLES)
        named = stored_rows(
            database,
            "SELECT table_name FROM information_schema.tables"
            f" WHERE table_schema = 'public' AND table_name IN ({tables})",
        )
        assert len(named) == len(pg_schema.TABLES)
        return "\n".join(
            str(row)
            for (table,) in named
            for row in stored_rows(database, f"SELECT * FROM {table}")
        ).encode()
    parts = [database.read_bytes()]
    for suffix in ("-wal", "-shm", "-journal"):
        extra = Path(f"{database}{suffix}")
        if extra.exists():
            parts.append(extra.read_bytes())
    return b"".join(parts)


def assert_nowhere(data: bytes, numbers: Iterable[str]) -> None:
    for number in numbers:
        for spelling in spellings(number):
            assert spelling not in data, f"a form of a number lingers: {spelling[:6]!r}..."


async def send_and_settle(gateway: RunningGateway, messages: list[dict[str, Any]]) -> list[str]:
    finals = gateway.finals()
    ids = []
    for message in messages:
        response = await gateway.send(**message)
        assert response.status == 202, await response.text()
        ids.append((await response.json())["id"])
    for _ in ids:
        await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
    return ids


rows = stored_rows
DAY_OF_SUBMIT = TEST_DIALECT.day("submitted_at")


async def test_pseudonymise_then_delete_across_epochs(
    config_dict: dict[str, Any], tmp_path: Path
) -> None:
    database = tmp_path / "smsgw.sqlite3"
    clock = ManualClock(JANUARY)
    config = config_from_dict(config_dict)
    january = [
        {"to": NUMBERS[0], "client_ref": "order-1"},
        {"to": NUMBERS[0], "from": SENDER_NUMBER},
        {"to": NUMBERS[1], "body": "a body to erase"},
    ]
    async with running_gateway(config, clock) as gateway:
        await send_and_settle(gateway, january)
        days_before = rows(
            database, f"SELECT {DAY_OF_SUBMIT}, count(*) FROM messages GROUP BY 1 ORDER BY 1"
        )
        clock.advance(31 * DAY)
        report = await gateway.app[RETENTION].run()
        assert (report.pseudonymised, report.bodies_erased) == (3, 3)
        again = await gateway.app[RETENTION].run()
        assert (again.pseudonymised, again.deleted) == (0, 0)  # idempotent

        await send_and_settle(gateway, [{"to": NUMBERS[0]}])  # now in February
        clock.advance(31 * DAY)
        assert (await gateway.app[RETENTION].run()).pseudonymised == 1

        status, listing = await gateway.get_json("/v1/messages?limit=10")
        assert status == 200 and all(m["pseudonymised"] for m in listing["messages"])
        metrics = await (await gateway.http.get(f"{gateway.url}/metrics")).text()
        assert 'smsgw_retention_rows_total{action="pseudonymised"} 4.0' in metrics
        assert "smsgw_retention_oldest_identifiable_seconds 0.0" in metrics
        epochs = gateway.app[KEYS].epochs("acme")
        assert epochs == ["2026-01", "2026-02"]

    table = rows(
        database,
        "SELECT recipient, sender, client_ref, submitted_at, pseudonym_epoch FROM messages"
        " ORDER BY id",
    )
    recipients = [r[0] for r in table]
    assert all(r.startswith("p1:") for r in recipients)
    assert recipients[0] == recipients[1] != recipients[2]  # one pseudonym within an epoch
    assert recipients[3] != recipients[0]  # and another in the next epoch
    assert table[1][1].startswith("p1:") and table[0][1] == "Acme"
    assert table[0][2].startswith("p1:")
    assert all(r[3] % 3600 == 0 for r in table)
    days_after = rows(
        database, f"SELECT {DAY_OF_SUBMIT}, count(*) FROM messages GROUP BY 1 ORDER BY 1"
    )
    assert days_after[: len(days_before)] == days_before
    assert rows(database, "SELECT count(*) FROM inbox") == [(0,)]
    assert_nowhere(raw_bytes(database), [*NUMBERS, SENDER_NUMBER])

    async with running_gateway(config, clock) as gateway:
        clock.advance(366 * DAY)
        report = await gateway.app[RETENTION].run()
        assert report.deleted == 4
        assert sorted(report.epochs_destroyed) == [("acme", "2026-01"), ("acme", "2026-02")]
    assert rows(database, "SELECT count(*) FROM messages") == [(0,)]
    assert rows(database, "SELECT sum(count) FROM daily_counts") == [(4,)]
    assert stored_keys(tmp_path)["acme"].epochs == frozenset()


async def test_export_erase_restrict_and_object(
    config_dict: dict[str, Any], tmp_path: Path
) -> None:
    database = tmp_path / "smsgw.sqlite3"
    clock = ManualClock(JANUARY)
    mine, theirs = NUMBERS
    async with running_gateway(config_from_dict(config_dict), clock) as gateway:
        await send_and_settle(gateway, [{"to": mine, "body": "old"}, {"to": theirs}])
        clock.advance(31 * DAY)
        await gateway.app[RETENTION].run()
        await send_and_settle(gateway, [{"to": mine, "body": "new body"}])
        await gateway.http.put(
            f"{gateway.url}/v1/consents/{mine}",
            json={"purpose": "marketing"},
            headers=gateway.headers,
        )
        await inbound(gateway, "STOP", handset=mine)

        status, export = await gateway.get_json(f"/v1/subjects/{mine}/export")
        assert status == 200
        assert [m["to"] for m in export["messages"]][:1] == [mine]
        assert len(export["pseudonymised_messages"]) == 1
        assert export["consent"]["opted_out"] is True
        assert export["consent"]["consents"] == ["marketing"]
        dumped = json.dumps(export)
        assert theirs not in dumped
        other_status, other = await gateway.get_json(f"/v1/subjects/{mine}/export", OTHER_KEY)
        assert other_status == 200
        assert (other["messages"], other["pseudonymised_messages"]) == ([], [])
        assert other["consent"]["history"] == []
        subject = export["subject"]
        pseudonymised_to = export["pseudonymised_messages"][0]["to"]

        async with gateway.http.post(
            f"{gateway.url}/v1/subjects/{mine}/erase", headers=gateway.headers
        ) as response:
            assert response.status == 200
            erased = (await response.json())["erased"]
        assert erased["messages"] >= 3 and erased["suppression_kept"] == 1
        response = await gateway.send(to=mine)
        assert (await response.json())["code"] == "recipient_opted_out"
        _, audit = await gateway.get_json("/v1/audit?limit=100")
        assert "subject_erased" in [e["action"] for e in audit["entries"]]

    texts = " ".join(
        str(value)
        for table in ("messages", "inbox", "notices", "consent_events", "audit_log")
        for row in rows(database, f"SELECT * FROM {table}")
        for value in row
    )
    suppression = rows(database, "SELECT subject, kind, source FROM consent_events")
    assert mine not in texts and mine[1:] not in texts and pseudonymised_to not in texts
    assert texts.count(subject) == 1  # the documented suppression entry, nothing else
    assert suppression == [(subject, "opted_out", "erasure")]
    assert theirs[1:] not in texts or "p1:" in texts  # the other subject is untouched
    config_path = tmp_path / "config.toml"
    write_toml(config_path, config_dict)
    assert await asyncio.to_thread(main, ["audit", "verify", "--config", str(config_path)]) == 0


async def test_restriction_and_objection(gateway: RunningGateway) -> None:
    restricted, objecting = "+46701239991", "+46701239992"
    async with gateway.http.put(
        f"{gateway.url}/v1/subjects/{restricted}/restriction", headers=gateway.headers
    ) as response:
        assert (response.status, (await response.json())["restricted"]) == (200, True)
    response = await gateway.send(to=restricted)
    assert (response.status, (await response.json())["code"]) == (403, "processing_restricted")
    raw = await RawEsme.connect(gateway.smpp_port)
    await raw.bind(command=CommandId.bind_transmitter)
    assert await smpp_submit(raw, 2, restricted) == 0x403
    await raw.close()
    async with gateway.http.delete(
        f"{gateway.url}/v1/subjects/{restricted}/restriction", headers=gateway.headers
    ) as response:
        assert response.status == 200
    assert (await gateway.send(to=restricted)).status == 202

    async with gateway.http.post(
        f"{gateway.url}/v1/subjects/{objecting}/objection", headers=gateway.headers
    ) as response:
        assert (response.status, (await response.json())["opted_out"]) == (200, True)
    for purpose in ("transactional", "marketing"):
        response = await gateway.send(to=objecting, purpose=purpose)
        assert (await response.json())["code"] == "recipient_opted_out"
    _, audit = await gateway.get_json("/v1/audit")
    assert [e["action"] for e in audit["entries"]][:3] == [
        "opted_out",
        "restriction_lifted",
        "restricted",
    ]
    metrics = await (await gateway.http.get(f"{gateway.url}/metrics")).text()
    assert 'smsgw_subject_requests_total{kind="restrict",tenant="acme"} 1.0' in metrics


async def test_black_box_serve_pseudonymises_within_the_window(tmp_path: Path) -> None:
    config = merged(
        base_config(tmp_path),
        {
            "privacy": {
                "retention": {"pseudonymise_after": "2s", "interval": "1s", "delete_after": "1h"}
            }
        },
    )
    config_path = tmp_path / "config.toml"
    write_toml(config_path, config)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession() as http, gateway_process(config_path) as gateway:
        for number in NUMBERS:
            document = {"to": number, "from": "Acme", "body": "black box", "client_ref": "r-1"}
            async with http.post(
                f"{gateway.url}/v1/messages", json=document, headers=headers
            ) as response:
                assert response.status == 202

        async def handled(action: str) -> float:
            async with http.get(f"{gateway.url}/metrics") as response:
                text = await response.text()
            match = re.search(rf'smsgw_retention_rows_total{{action="{action}"}} (\S+)', text)
            return float(match.group(1)) if match else 0.0

        async def until_done() -> None:
            """Another process has no event to await: its metrics are what it tells."""
            for action in ("pseudonymised", "bodies_erased"):
                while await handled(action) < len(NUMBERS):  # noqa: ASYNC110
                    await asyncio.sleep(0.1)

        await asyncio.wait_for(until_done(), 20)
        gateway.process.terminate()
        assert await gateway.process.wait() == 0
    assert_nowhere(raw_bytes(tmp_path / "smsgw.sqlite3"), NUMBERS)


async def test_tenant_purge_and_key_file_mode(config_dict: dict[str, Any], tmp_path: Path) -> None:
    async with running_gateway(config_from_dict(config_dict)) as gateway:
        await send_and_settle(gateway, [{"to": NUMBERS[0]}])
        await gateway.http.put(
            f"{gateway.url}/v1/consents/{NUMBERS[0]}",
            json={"purpose": "marketing"},
            headers=gateway.headers,
        )
    config_path = tmp_path / "config.toml"
    write_toml(config_path, config_dict)
    old_key = stored_keys(tmp_path)["acme"]
    assert (
        await asyncio.to_thread(
            main, ["tenant", "purge", "acme", "--yes", "--config", str(config_path)]
        )
        == 0
    )
    database = tmp_path / "smsgw.sqlite3"
    for table in ("messages", "inbox", "consent_events", "audit_log"):
        assert rows(database, f"SELECT count(*) FROM {table} WHERE tenant = 'acme'") == [(0,)]
    # Still configured, so it goes on under a fresh registry key; the old keys are gone.
    new_key = stored_keys(tmp_path)["acme"]
    assert new_key.registry is not None and old_key.registry != new_key.registry
    assert new_key.epochs == frozenset()

    # The file the keys' secret is in (on PostgreSQL the KEK) open to others: no start.
    os.chmod(tmp_path / ("keys.json" if BACKEND is StorageBackend.SQLITE else "kek"), 0o644)
    assert await asyncio.to_thread(main, ["serve", "--config", str(config_path)]) == 2


async def test_subject_commands_on_the_command_line(
    config_dict: dict[str, Any], tmp_path: Path, capsys: Any
) -> None:
    async with running_gateway(config_from_dict(config_dict)) as gateway:
        await send_and_settle(gateway, [{"to": NUMBERS[0]}, {"to": NUMBERS[1]}])
    config_path = tmp_path / "config.toml"
    write_toml(config_path, config_dict)

    def smsgw(*args: str) -> int:
        return main([*args, "--config", str(config_path)])

    assert (
        await asyncio.to_thread(smsgw, "subject", "export", "--tenant", "acme", "0701230001") == 0
    )
    export = json.loads(capsys.readouterr().out)
    assert [m["to"] for m in export["messages"]] == [NUMBERS[0]]
    assert (
        await asyncio.to_thread(smsgw, "subject", "restrict", "--tenant", "acme", NUMBERS[0]) == 0
    )
    assert json.loads(capsys.readouterr().out)["restricted"] is True
    assert await asyncio.to_thread(smsgw, "subject", "erase", "--tenant", "acme", NUMBERS[0]) == 0
    assert json.loads(capsys.readouterr().out)["messages"] == 1
    assert (
        await asyncio.to_thread(smsgw, "subject", "export", "--tenant", "nobody", NUMBERS[0]) == 2
    )
    assert await asyncio.to_thread(smsgw, "retention", "run") == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["pseudonymised"] == 0
    assert rows(tmp_path / "smsgw.sqlite3", "SELECT count(*) FROM messages") == [(1,)]
