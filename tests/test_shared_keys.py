"""Keys shared by several instances on one PostgreSQL database, sealed under a KEK.

The database tests run two `SharedKeyRing`s (two instances, each with its own
connections and listener) on one fresh database.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import Config, ConfigError, config_from_dict
from gateway.server.app import StartupError
from gateway.server.appkeys import KEYS, REGISTRY
from gateway.server.cli import main
from privacy.key_wrap import Kek, UnwrapError, read_kek, unwrap, wrap
from privacy.keys import KeyFileError, KeyRing
from privacy.pseudonyms import pseudonymise
from privacy.shared_keys import SharedKeyRing, rotate_kek
from tests.conftest import base_config, make_kek_file, running_gateway
from tests.postgres import postgres_dsn
from tests.test_admin import admin_call
from tests.test_consent import inbound, submit_code
from tests.test_process import write_toml

__all__ = ["postgres_dsn"]

TIMEOUT = 10.0


def kek_file(directory: Path, name: str = "kek") -> Path:
    return make_kek_file(directory / name)


# --- sealing (no database) ------------------------------------------------------------------

_KEK = Kek(Path("kek"), secrets.token_bytes(32))
_tenants = st.text(min_size=1, max_size=12)
_epochs = st.sampled_from(["", "2026-01", "2026-11", "2027-03"])


@settings(deadline=None)  # the machine is shared: a slow example is no failure here
@given(tenant=_tenants, epoch=_epochs, key=st.binary(min_size=32, max_size=32))
def test_a_sealed_key_opens_with_its_kek_tenant_kind_and_epoch(
    tenant: str, epoch: str, key: bytes
) -> None:
    nonce, sealed = wrap(_KEK, tenant, "epoch", epoch, key)
    assert key not in sealed
    assert unwrap(_KEK, tenant, "epoch", epoch, nonce, sealed) == key


@settings(deadline=None)
@given(
    tenant=_tenants,
    other_tenant=_tenants,
    epoch=_epochs,
    other_epoch=_epochs,
    flip=st.integers(min_value=0, max_value=47),
)
def test_a_sealed_key_moved_or_changed_does_not_open(
    tenant: str, other_tenant: str, epoch: str, other_epoch: str, flip: int
) -> None:
    key = secrets.token_bytes(32)
    nonce, sealed = wrap(_KEK, tenant, "epoch", epoch, key)
    if (other_tenant, other_epoch) != (tenant, epoch):
        with pytest.raises(UnwrapError):  # the row swapped to another tenant or epoch
            unwrap(_KEK, other_tenant, "epoch", other_epoch, nonce, sealed)
    with pytest.raises(UnwrapError):  # an epoch key passed off as the registry key
        unwrap(_KEK, tenant, "registry", epoch, nonce, sealed)
    tampered = bytearray(sealed)
    tampered[flip] ^= 0x01
    with pytest.raises(UnwrapError):
        unwrap(_KEK, tenant, "epoch", epoch, nonce, bytes(tampered))
    with pytest.raises(UnwrapError):
        unwrap(Kek(Path("other"), secrets.token_bytes(32)), tenant, "epoch", epoch, nonce, sealed)


def test_a_kek_never_shows_in_its_repr() -> None:
    assert _KEK.secret.hex() not in repr(_KEK)
    assert repr(_KEK.secret) not in repr(_KEK)


@pytest.mark.parametrize(
    ("content", "mode", "problem"),
    [
        ("A" * 44 + "\n", 0o644, "accessible to group or others (mode 0644); run: chmod 600"),
        ("not base64 at all!\n", 0o600, "is not one line of base64"),
        (base64.b64encode(b"k" * 16).decode(), 0o600, "must hold 32 bytes, it holds 16"),
    ],
)
def test_an_unusable_kek_file_is_refused_naming_the_file_not_its_content(
    tmp_path: Path, content: str, mode: int, problem: str
) -> None:
    path = tmp_path / "kek"
    path.write_text(content)
    path.chmod(mode)
    with pytest.raises(KeyFileError) as refused:
        read_kek(path)
    assert str(path) in str(refused.value)
    assert problem in str(refused.value)
    assert content.strip() not in str(refused.value)


def test_a_missing_kek_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist; make one with: head -c 32"):
        read_kek(tmp_path / "absent")


# --- two instances on one database ----------------------------------------------------------


@asynccontextmanager
async def ring(dsn: str, kek: Path, **options: Path) -> AsyncIterator[SharedKeyRing]:
    keys = await SharedKeyRing.connect(dsn, kek, **options)
    try:
        yield keys
    finally:
        await keys.close()


def destroyed_signal(keys: SharedKeyRing) -> asyncio.Queue[str]:
    """The tenants whose keys another instance destroyed, as this one drops them."""
    heard: asyncio.Queue[str] = asyncio.Queue()
    keys.on_destroyed_elsewhere(heard.put_nowait)
    return heard


async def fetch(dsn: str, sql: str) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(record) for record in await conn.fetch(sql)]
    finally:
        await conn.close()


async def table_rows(dsn: str) -> list[tuple[object, ...]]:
    return await fetch(dsn, "SELECT tenant, kind, epoch FROM wrapped_keys ORDER BY 1, 2, 3")


@pytest.mark.postgres
async def test_two_instances_converge_on_one_key_under_concurrent_first_use(
    postgres_dsn: str, tmp_path: Path
) -> None:
    kek = kek_file(tmp_path)
    tenants = [f"tenant-{i}" for i in range(20)]
    async with ring(postgres_dsn, kek) as a, ring(postgres_dsn, kek) as b:

        async def first_use(make: Callable[[str], bytes]) -> list[bytes]:
            return await asyncio.to_thread(lambda: [make(t) for t in tenants])

        registry_a, registry_b, epoch_a, epoch_b = await asyncio.gather(
            first_use(a.registry_key),
            first_use(b.registry_key),
            first_use(lambda t: a.epoch_key(t, "2026-11")),
            first_use(lambda t: b.epoch_key(t, "2026-11")),
        )
        assert registry_a == registry_b
        assert epoch_a == epoch_b
        assert len(set(registry_a)) == len(tenants)
    assert len(await table_rows(postgres_dsn)) == 2 * len(tenants)
    async with ring(postgres_dsn, kek) as restarted:  # what is in memory is what is durable
        assert [restarted.registry_key(t) for t in tenants] == registry_a


@pytest.mark.postgres
async def test_a_pseudonym_made_on_one_instance_equals_the_one_made_on_another(
    postgres_dsn: str, tmp_path: Path
) -> None:
    kek = kek_file(tmp_path)
    async with ring(postgres_dsn, kek) as a:
        on_a = pseudonymise(a.registry_key("acme"), "+46701234567")
        async with ring(postgres_dsn, kek) as b:
            assert pseudonymise(b.registry_key("acme"), "+46701234567") == on_a


async def relation_file(dsn: str) -> object:
    return (await fetch(dsn, "SELECT pg_relation_filepath('wrapped_keys')"))[0][0]


@pytest.mark.postgres
async def test_an_epoch_destroyed_on_one_instance_is_gone_from_the_other_and_the_table(
    postgres_dsn: str, tmp_path: Path
) -> None:
    kek = kek_file(tmp_path)
    async with ring(postgres_dsn, kek) as a, ring(postgres_dsn, kek) as b:
        a.registry_key("acme")
        a.epoch_key("acme", "2026-10")
        a.epoch_key("acme", "2026-11")
        kept = b.epoch_key("acme", "2026-11")
        assert b.epoch_key("acme", "2026-10") == a.epoch_key("acme", "2026-10")
        heard = destroyed_signal(b)
        file_before = await relation_file(postgres_dsn)
        a.destroy_epoch("acme", "2026-10")
        assert await asyncio.wait_for(heard.get(), TIMEOUT) == "acme"
        assert b.epoch_key("acme", "2026-10", create=False) is None
        assert b.epochs("acme") == ["2026-11"]
        assert b.epoch_key("acme", "2026-11") == kept
        assert ("acme", "epoch", "2026-10") not in await table_rows(postgres_dsn)
        # VACUUM FULL wrote the table anew: the deleted row is in no page of the live table.
        assert await relation_file(postgres_dsn) != file_before


@pytest.mark.postgres
async def test_a_tenant_destroyed_on_one_instance_loses_every_key_on_the_other(
    postgres_dsn: str, tmp_path: Path
) -> None:
    kek = kek_file(tmp_path)
    async with ring(postgres_dsn, kek) as a, ring(postgres_dsn, kek) as b:
        old = a.registry_key("acme")
        a.epoch_key("acme", "2026-11")
        a.registry_key("other")
        assert b.registry_key("acme") == old
        heard = destroyed_signal(b)
        a.destroy_tenant("acme")
        assert await asyncio.wait_for(heard.get(), TIMEOUT) == "acme"
        assert "acme" not in b.tenant_ids()
        assert b.epoch_key("acme", "2026-11", create=False) is None
        fresh = b.registry_key("acme")  # a new, unrelated key, the same on both
        assert fresh != old
        assert a.registry_key("acme") == fresh
        assert await table_rows(postgres_dsn) == [
            ("acme", "registry", ""),
            ("other", "registry", ""),
        ]


@pytest.mark.postgres
async def test_a_destruction_missed_while_the_listener_was_down_is_caught_up(
    postgres_dsn: str, tmp_path: Path
) -> None:
    kek = kek_file(tmp_path)
    async with ring(postgres_dsn, kek) as a, ring(postgres_dsn, kek) as b:
        assert b.epoch_key("acme", "2026-11") == a.epoch_key("acme", "2026-11")
        heard = destroyed_signal(b)
        admin = await asyncpg.connect(postgres_dsn)
        try:
            # Cut the connections listening on this test's database: b's listener goes down.
            cut = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
            )
            assert cut == 2
        finally:
            await admin.close()
        a.destroy_epoch("acme", "2026-11")
        assert await asyncio.wait_for(heard.get(), TIMEOUT) == "acme"
        assert b.epoch_key("acme", "2026-11", create=False) is None


@pytest.mark.postgres
async def test_a_wrong_kek_stops_the_start_naming_its_file_and_no_key(
    postgres_dsn: str, tmp_path: Path
) -> None:
    right, wrong = kek_file(tmp_path, "right"), kek_file(tmp_path, "wrong")
    async with ring(postgres_dsn, right) as a:
        key = a.registry_key("acme")
    with pytest.raises(KeyFileError) as refused:
        await SharedKeyRing.connect(postgres_dsn, wrong)
    message = str(refused.value)
    assert str(wrong) in message
    assert "does not open 1 of the database's keys" in message
    for secret in (key, read_kek(right).secret, read_kek(wrong).secret):
        assert secret.hex() not in message
        assert base64.b64encode(secret).decode() not in message


@pytest.mark.postgres
async def test_a_key_file_is_imported_once_and_then_removed(
    postgres_dsn: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys.json"
    old = KeyRing.open(key_file)
    registry, epoch = old.registry_key("acme"), old.epoch_key("acme", "2026-11")
    kek = kek_file(tmp_path)
    async with ring(postgres_dsn, kek, import_from=key_file) as imported:
        assert imported.registry_key("acme") == registry
        assert imported.epoch_key("acme", "2026-11", create=False) == epoch
    assert not key_file.exists()  # its keys in clear would outlive a destruction
    later = KeyRing.open(tmp_path / "other.json")
    later.registry_key("acme")
    async with ring(postgres_dsn, kek, import_from=tmp_path / "other.json") as again:
        assert again.registry_key("acme") == registry  # the table was not empty: no import
    assert (tmp_path / "other.json").exists()


@pytest.mark.postgres
async def test_rotating_the_kek_reseals_every_key_so_the_old_kek_opens_none(
    postgres_dsn: str, tmp_path: Path
) -> None:
    old, new = kek_file(tmp_path, "old"), kek_file(tmp_path, "new")
    async with ring(postgres_dsn, old) as before:
        registry, epoch = before.registry_key("acme"), before.epoch_key("acme", "2026-11")
    assert await rotate_kek(postgres_dsn, old, new) == 2
    assert await rotate_kek(postgres_dsn, old, new) == 0  # a second run finds nothing to do
    async with ring(postgres_dsn, new) as after:
        assert after.registry_key("acme") == registry
        assert after.epoch_key("acme", "2026-11", create=False) == epoch
    with pytest.raises(KeyFileError, match="does not open 2 of the database's keys"):
        await SharedKeyRing.connect(postgres_dsn, old)


# --- a gateway on PostgreSQL ----------------------------------------------------------------


def gateway_config(tmp_path: Path, dsn: str, kek: Path | None) -> Config:
    raw = base_config(tmp_path)
    raw["storage"] = {"path": str(tmp_path / "smsgw.sqlite3"), "backend": "postgres", "dsn": dsn}
    raw["privacy"].pop("kek_file", None)  # base_config's own, on the PostgreSQL suite
    if kek is not None:
        raw["privacy"]["kek_file"] = str(kek)
    return config_from_dict(raw)


@pytest.mark.postgres
async def test_a_gateway_on_postgres_blocks_a_submit_after_an_opt_out_under_its_shared_key(
    postgres_dsn: str, tmp_path: Path
) -> None:
    config = gateway_config(tmp_path, postgres_dsn, kek_file(tmp_path))
    async with running_gateway(config) as gateway:
        assert await submit_code(gateway) == "accepted"
        assert (await inbound(gateway, "STOP"))["keyword"] == "stop"
        assert await submit_code(gateway) == "recipient_opted_out"
    assert not await asyncio.to_thread(os.path.exists, config.privacy.key_file)  # no key file
    assert await table_rows(postgres_dsn) == [("acme", "registry", ""), ("other", "registry", "")]
    async with running_gateway(config) as restarted:  # the registry key came back sealed
        assert await submit_code(restarted) == "recipient_opted_out"
        assert await submit_code(restarted, to="+46701112234") == "accepted"


@pytest.mark.postgres
async def test_a_gateway_with_the_wrong_kek_does_not_start_and_names_the_setting(
    postgres_dsn: str, tmp_path: Path
) -> None:
    async with running_gateway(gateway_config(tmp_path, postgres_dsn, kek_file(tmp_path))):
        pass
    wrong = gateway_config(tmp_path, postgres_dsn, kek_file(tmp_path, "wrong"))
    with pytest.raises(StartupError, match=r"privacy\.kek_file: KEK file .*wrong \(id "):
        async with running_gateway(wrong):
            pass


def test_postgres_without_a_kek_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"privacy\.kek_file"):
        gateway_config(tmp_path, "postgresql://postgres@127.0.0.1/none", None)


@pytest.mark.postgres
async def test_smsgw_keys_rotate_kek_leaves_a_gateway_working_under_the_new_kek(
    postgres_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = kek_file(tmp_path, "old"), kek_file(tmp_path, "new")
    async with running_gateway(gateway_config(tmp_path, postgres_dsn, old)) as gateway:
        await inbound(gateway, "STOP")
    raw = base_config(tmp_path)
    raw["storage"] = {"path": str(tmp_path / "smsgw.sqlite3"), "backend": "postgres"}
    raw["storage"]["dsn"] = postgres_dsn
    raw["privacy"] = {**raw["privacy"], "kek_file": str(old)}
    write_toml(tmp_path / "smsgw.toml", raw)
    command = ["--config", str(tmp_path / "smsgw.toml"), "keys", "rotate-kek"]
    assert await asyncio.to_thread(main, [*command, "--new-kek-file", str(new)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["resealed"] == 2
    assert report["kek_id"] == read_kek(new).id
    assert f"then destroy {old}" in report["next"]
    async with running_gateway(gateway_config(tmp_path, postgres_dsn, new)) as rotated:
        assert await submit_code(rotated) == "recipient_opted_out"


def instance_config(tmp_path: Path, name: str, dsn: str, kek: Path) -> Config:
    """One of several instances on one database: its own files, the shared KEK."""
    (tmp_path / name).mkdir()
    return gateway_config(tmp_path / name, dsn, kek)


@pytest.mark.postgres
async def test_a_purge_on_one_instance_renews_the_pseudonyms_of_the_other(
    postgres_dsn: str, tmp_path: Path
) -> None:
    kek = kek_file(tmp_path)
    number = "+46701112233"
    async with (
        running_gateway(instance_config(tmp_path, "a", postgres_dsn, kek)) as a,
        running_gateway(instance_config(tmp_path, "b", postgres_dsn, kek)) as b,
    ):
        registry_a, registry_b = a.app[REGISTRY], b.app[REGISTRY]
        before = registry_b.subject("acme", number)  # cached on b from now on
        assert registry_a.subject("acme", number) == before
        shared_b = b.app[KEYS]
        assert isinstance(shared_b, SharedKeyRing)
        heard = destroyed_signal(shared_b)
        status, _ = await admin_call(a.http, "POST", f"{a.url}/admin/v1/tenants/acme/purge")
        assert status == 200
        assert await asyncio.wait_for(heard.get(), TIMEOUT) == "acme"
        after = registry_b.subject("acme", number)
        assert after != before  # b's cached pseudonym under the destroyed key is gone
        assert registry_a.subject("acme", number) == after  # one fresh key for both
        assert b.app[KEYS].registry_key("acme") == a.app[KEYS].registry_key("acme")
