"""The privacy key file and the pseudonym function built on its keys."""

import base64
import hashlib
import hmac
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from privacy.keys import KEY_BYTES, KeyFileError, KeyRing, epoch_of
from privacy.pseudonyms import PSEUDONYM_BYTES, pseudonymise

NUMBER = "+46701234567"
e164_numbers = st.integers(10**7, 10**15 - 1).map(lambda digits: f"+{digits}")
keys = st.binary(min_size=32, max_size=32)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def document(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def write_key_file(path: Path, content: object) -> None:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    path.chmod(0o600)


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


# --- the key file ------------------------------------------------------------------------


def test_open_creates_a_private_file_and_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "var" / "keys.json"
    old_umask = os.umask(0)  # a permissive umask must not make the file readable
    try:
        ring = KeyRing.open(path)
    finally:
        os.umask(old_umask)
    assert ring.path == path
    assert mode_of(path) == 0o600
    assert document(path) == {"version": 1, "tenants": {}}


def test_keys_are_random_persisted_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    ring = KeyRing.open(path)
    registry = ring.registry_key("acme")
    epoch = ring.epoch_key("acme", "2026-11")
    assert len(registry) == len(epoch) == KEY_BYTES
    assert registry != epoch
    assert ring.registry_key("acme") is registry  # a dict lookup from now on
    assert ring.registry_key("other") != registry

    reopened = KeyRing.open(path)
    assert reopened.registry_key("acme") == registry
    assert reopened.epoch_key("acme", "2026-11", create=False) == epoch
    assert reopened.tenant_ids() == ["acme", "other"]
    assert mode_of(path) == 0o600
    assert document(path)["tenants"]["acme"] == {
        "registry_key": b64(registry),
        "epochs": {"2026-11": b64(epoch)},
    }


def test_keys_are_not_derived_from_anything(tmp_path: Path) -> None:
    first = KeyRing.open(tmp_path / "a" / "keys.json")
    second = KeyRing.open(tmp_path / "b" / "keys.json")
    assert first.registry_key("acme") != second.registry_key("acme")
    assert first.epoch_key("acme", "2026-11") != second.epoch_key("acme", "2026-11")


def test_epoch_keys_are_listed_oldest_first_and_only_created_when_asked(
    tmp_path: Path,
) -> None:
    ring = KeyRing.open(tmp_path / "keys.json")
    assert ring.epoch_key("acme", "2026-11", create=False) is None
    assert ring.epochs("acme") == []
    for label in ("2026-12", "2025-01", "2026-02"):
        ring.epoch_key("acme", label)
    assert ring.epochs("acme") == ["2025-01", "2026-02", "2026-12"]
    assert ring.epochs("other") == []


@pytest.mark.parametrize("label", ["2026-13", "2026-00", "2026-1", "26-11", "2026/11", ""])
def test_a_malformed_epoch_label_is_refused(tmp_path: Path, label: str) -> None:
    ring = KeyRing.open(tmp_path / "keys.json")
    with pytest.raises(ValueError, match="epoch label"):
        ring.epoch_key("acme", label)


def test_a_destroyed_epoch_key_is_gone_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    ring = KeyRing.open(path)
    old = ring.epoch_key("acme", "2026-10")
    kept = ring.epoch_key("acme", "2026-11")
    ring.destroy_epoch("acme", "2026-10")
    ring.destroy_epoch("acme", "2026-10")  # idempotent, e.g. a retention run after a crash
    ring.destroy_epoch("nobody", "2026-10")

    assert ring.epoch_key("acme", "2026-10", create=False) is None
    assert b64(old) not in path.read_text()
    assert KeyRing.open(path).epochs("acme") == ["2026-11"]
    assert KeyRing.open(path).epoch_key("acme", "2026-11") == kept
    assert ring.epoch_key("acme", "2026-10") != old  # a fresh, unrelated key


def test_destroy_tenant_removes_all_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    ring = KeyRing.open(path)
    acme = [ring.registry_key("acme"), ring.epoch_key("acme", "2026-10")]
    other = ring.registry_key("other")
    ring.destroy_tenant("acme")
    ring.destroy_tenant("acme")

    text = path.read_text()
    assert not any(b64(key) in text for key in acme)
    assert b64(other) in text
    reopened = KeyRing.open(path)
    assert reopened.tenant_ids() == ["other"]
    assert reopened.epochs("acme") == []
    assert reopened.registry_key("acme") not in acme


def test_changes_leave_no_temporary_files(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path / "keys.json")
    ring.registry_key("acme")
    ring.epoch_key("acme", "2026-11")
    ring.destroy_epoch("acme", "2026-11")
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]


def test_open_removes_temporary_files_left_by_a_crash(tmp_path: Path) -> None:
    KeyRing.open(tmp_path / "keys.json")
    stale = tmp_path / ".keys.json.0123456789abcdef.tmp"
    stale.write_text("may hold a key destroyed since")
    KeyRing.open(tmp_path / "keys.json")
    assert not stale.exists()


def test_a_failed_write_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "keys.json"
    ring = KeyRing.open(path)
    registry = ring.registry_key("acme")
    before = path.read_bytes()

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(KeyFileError, match="No space left"):
        ring.epoch_key("acme", "2026-11")
    with pytest.raises(KeyFileError):
        ring.destroy_tenant("acme")
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]
    assert ring.epoch_key("acme", "2026-11", create=False) is None  # never handed out
    assert ring.registry_key("acme") == registry


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o660, 0o644, 0o666])
def test_a_file_open_to_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "keys.json"
    KeyRing.open(path)
    path.chmod(mode)
    with pytest.raises(KeyFileError, match=r"group or others.*chmod 600"):
        KeyRing.open(path)


def test_a_symlink_is_refused(tmp_path: Path) -> None:
    KeyRing.open(tmp_path / "real.json")
    (tmp_path / "keys.json").symlink_to(tmp_path / "real.json")
    with pytest.raises(KeyFileError, match="symlink"):
        KeyRing.open(tmp_path / "keys.json")


def test_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "keys.json").mkdir(mode=0o700)
    with pytest.raises(KeyFileError):
        KeyRing.open(tmp_path / "keys.json")


SECRET = b64(b"s" * 31)  # one byte short: decodes, but must not be quoted


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "not valid JSON"),
        ("{", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ([], "version 1"),
        ({"tenants": {}}, "version 1"),
        ({"version": 2, "tenants": {}}, "version 1"),
        ({"version": True, "tenants": {}}, "version 1"),
        ({"version": 1}, "exactly"),
        ({"version": 1, "tenants": [], "extra": 1}, "exactly"),
        ({"version": 1, "tenants": {"acme": []}}, "registry_key"),
        ({"version": 1, "tenants": {"acme": {"master": SECRET}}}, "registry_key"),
        ({"version": 1, "tenants": {"": {}}}, "empty tenant id"),
        ({"version": 1, "tenants": {"acme": {"registry_key": 7}}}, "base64 string"),
        ({"version": 1, "tenants": {"acme": {"registry_key": "!" + SECRET}}}, "not valid base64"),
        ({"version": 1, "tenants": {"acme": {"registry_key": SECRET}}}, "expected 32 bytes"),
        ({"version": 1, "tenants": {"acme": {"epochs": []}}}, "epochs must be an object"),
        ({"version": 1, "tenants": {"acme": {"epochs": {"2026-13": SECRET}}}}, "epoch label"),
        ({"version": 1, "tenants": {"acme": {"epochs": {"2026-11": SECRET}}}}, "32 bytes"),
    ],
)
def test_a_damaged_file_is_refused_without_quoting_keys(
    tmp_path: Path, content: object, problem: str
) -> None:
    path = tmp_path / "keys.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
        path.chmod(0o600)
    else:
        write_key_file(path, content)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match=problem) as caught:
        KeyRing.open(path)
    assert SECRET not in str(caught.value)
    assert path.read_bytes() == before  # never "repaired" by dropping keys


def test_a_valid_hand_written_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    registry, epoch = os.urandom(32), os.urandom(32)
    write_key_file(
        path,
        {
            "version": 1,
            "tenants": {
                "acme": {"registry_key": b64(registry)},
                "other": {"epochs": {"2026-11": b64(epoch)}},
            },
        },
    )
    ring = KeyRing.open(path)
    assert ring.registry_key("acme") == registry
    assert ring.epoch_key("other", "2026-11", create=False) == epoch
    assert ring.epoch_key("acme", "2026-11", create=False) is None


@pytest.mark.parametrize(
    ("moment", "months", "label"),
    [
        (datetime(2026, 11, 15, 12, tzinfo=UTC), 1, "2026-11"),
        (datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC), 1, "2026-11"),
        (datetime(2026, 12, 1, tzinfo=UTC), 1, "2026-12"),
        (datetime(2027, 1, 1, tzinfo=UTC), 1, "2027-01"),
        (datetime(2026, 10, 1, tzinfo=UTC), 3, "2026-10"),
        (datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC), 3, "2026-10"),
        (datetime(2026, 9, 30, 23, 59, 59, tzinfo=UTC), 3, "2026-07"),
        (datetime(2026, 6, 30, tzinfo=UTC), 6, "2026-01"),
        (datetime(2026, 7, 1, tzinfo=UTC), 6, "2026-07"),
        (datetime(2026, 12, 31, tzinfo=UTC), 12, "2026-01"),
    ],
)
def test_epoch_of(moment: datetime, months: int, label: str) -> None:
    assert epoch_of(moment.timestamp(), months) == label


def test_epochs_are_utc_months() -> None:
    # 00:30 on 1 December in Stockholm is still November in UTC.
    assert epoch_of(datetime(2026, 11, 30, 23, 30, tzinfo=UTC).timestamp()) == "2026-11"


@pytest.mark.parametrize("months", [0, 5, 7, 24, -1])
def test_epoch_lengths_must_divide_a_year(months: int) -> None:
    with pytest.raises(ValueError, match="divide 12"):
        epoch_of(0.0, months)


# --- pseudonyms --------------------------------------------------------------------------


@given(keys, e164_numbers)
def test_pseudonyms_are_deterministic_and_look_like_no_number(key: bytes, number: str) -> None:
    pseudonym = pseudonymise(key, number)
    assert pseudonym == pseudonymise(key, number)
    assert pseudonym.startswith("p1:")
    digest = pseudonym.removeprefix("p1:")
    assert len(digest) == 2 * PSEUDONYM_BYTES
    assert digest == digest.lower() and bytes.fromhex(digest)
    assert number.removeprefix("+") not in pseudonym
    assert "+" not in pseudonym
    for algorithm in ("sha256", "sha1", "md5", "sha512", "blake2b"):
        plain = hashlib.new(algorithm, number.encode()).hexdigest()
        assert digest not in plain  # no plain hash, truncated or not


@given(keys, keys, e164_numbers, e164_numbers)
def test_other_keys_or_numbers_give_other_pseudonyms(
    key: bytes, other_key: bytes, number: str, other_number: str
) -> None:
    if key != other_key:
        assert pseudonymise(key, number) != pseudonymise(other_key, number)
    if number != other_number:
        assert pseudonymise(key, number) != pseudonymise(key, other_number)


@given(st.binary(min_size=16, max_size=200), e164_numbers)
def test_pseudonyms_are_hmac_sha256_for_any_key_length(key: bytes, number: str) -> None:
    expected = hmac.new(key, number.encode(), hashlib.sha256).hexdigest()[:32]
    assert pseudonymise(key, number) == "p1:" + expected


def test_a_pseudonym_is_truncated_hmac_sha256() -> None:
    key = bytes(range(32))
    expected = hmac.new(key, NUMBER.encode(), hashlib.sha256).hexdigest()[:32]
    assert pseudonymise(key, NUMBER) == "p1:" + expected


@pytest.mark.parametrize("raw", ["46701234567", "0046701234567", "+46 70 123 45 67", "+0701", ""])
def test_only_normalised_numbers_are_pseudonymised(raw: str) -> None:
    with pytest.raises(ValueError, match=r"E\.164") as caught:
        pseudonymise(bytes(32), raw)
    assert "4670" not in str(caught.value)


@pytest.mark.parametrize("key", [b"", b"short"])
def test_a_short_key_is_refused(key: bytes) -> None:
    with pytest.raises(ValueError, match="random bytes"):
        pseudonymise(key, NUMBER)


def test_key_ring_keys_work_as_pseudonym_keys(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path / "keys.json")
    registry = pseudonymise(ring.registry_key("acme"), NUMBER)
    assert registry == pseudonymise(
        KeyRing.open(tmp_path / "keys.json").registry_key("acme"), NUMBER
    )
    assert registry != pseudonymise(ring.registry_key("other"), NUMBER)
    assert registry != pseudonymise(ring.epoch_key("acme", "2026-11"), NUMBER)
