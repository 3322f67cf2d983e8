"""Typed, frozen configuration loaded once from ``config.toml``.

The dataclasses below are the schema: a generic loader walks their type hints,
so an unknown key, a wrong type or a missing value is reported with the path of
the key (``tenants[1].smpp.password: missing``) instead of failing later.
Durations are strings with a unit so that tests can shrink every window.

A section's rules sit next to its fields: the loader calls a section's
``check(path)`` once it is built, with the key path of the section, so a new
field and its check are one edit. `Config.check` holds the rules that span
sections (uniqueness across tenants, references to purposes and to the
callback allow-list).
"""

from __future__ import annotations

import functools
import hashlib
import re
import tomllib
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from phonenumbers import SUPPORTED_REGIONS

from gateway.numbers import InvalidNumber, is_numeric_address, is_short_code, normalise_msisdn

DURATION = "duration"
# Twilio's magic sender that its test credentials accept (see gateway.twilio).
TWILIO_TEST_SENDER = "+15005550006"
Seconds = Annotated[float, DURATION]

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class ConfigError(Exception):
    """A configuration problem, located by the path of the offending key."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


def parse_duration(text: str) -> float:
    """``"250ms"``, ``"2s"``, ``"15m"``, ``"1h"``, ``"30d"`` -> seconds."""
    match = _DURATION_RE.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use a number and one of ms, s, m, h, d)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class SubmitError(StrEnum):
    """How a simulator rule can make the submit itself fail (for testing client retries)."""

    NONE = ""
    THROTTLED = "throttled"
    QUEUE_FULL = "queue_full"
    SYSTEM_ERROR = "system_error"
    NO_RESPONSE = "no_response"


class Outcome(StrEnum):
    """How the simulated network ends a message."""

    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"
    EXPIRED = "expired"
    REJECTED = "rejected"


class StorageBackend(StrEnum):
    """Where the store lives: an embedded SQLite file, or a PostgreSQL server for instances."""

    SQLITE = "sqlite"
    POSTGRES = "postgres"


class Synchronous(StrEnum):
    """SQLite's ``synchronous`` pragma for the store."""

    NORMAL = "normal"
    FULL = "full"


class StopScope(StrEnum):
    """What a STOP from a handset opts out of."""

    TENANT = "tenant"
    SENDER = "sender"


class AddressPolicy(StrEnum):
    """How a tenant's SMPP addresses are read from their TON (see docs/smpp.md)."""

    # TON 0 and 2 digits: international if they form such a number, else national.
    LENIENT = "lenient"
    # TON 1 international, 2 national, 5 alphanumeric, 3 a short code; others refused.
    STRICT = "strict"


class DefaultCoding(StrEnum):
    """The alphabet a tenant's SMPP data_coding 0 ("SMSC default") means (see docs/smpp.md)."""

    GSM = "gsm"  # GSM 03.38, one septet per octet
    LATIN1 = "latin1"
    ASCII = "ascii"  # as data_coding 1: printable ASCII, CR and LF


class ErrorBody(StrEnum):
    """The body of a failed submit_sm_resp / data_sm_resp / bind_*_resp (see docs/smpp.md)."""

    # The response's C-string fields present: message_id a single NUL, a bind's system_id
    # ours, as SMPP 3.3 and 5.0 clients (and parsers that never look at the status) read.
    NUL = "nul"
    # No body at all, as SMPP 3.4 section 4.4.2 words it.
    EMPTY = "empty"


class MessageIdFormat(StrEnum):
    """How message ids travel over SMPP (Kannel's msg-id-type; see docs/smpp.md)."""

    HEX = "hex"  # our 20 hex digits, as HTTP shows them
    DECIMAL = "decimal"  # a number that fits 64 bits


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class LogConfig:
    format: LogFormat = LogFormat.TEXT
    level: LogLevel = LogLevel.INFO


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """A certificate (chain) and its private key, both PEM; the listener then speaks HTTPS."""

    cert_file: str
    key_file: str


@dataclass(frozen=True, slots=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_batch: int = 1000
    max_request_bytes: int = 4 * 1024 * 1024
    tls: TlsConfig | None = None
    # API key checks from an address that failed wait for their slot: base, doubling, cap;
    # a check whose slot is further away than max_auth_wait is refused unchecked (429).
    failed_auth_delay: Seconds = 0.1
    max_auth_delay: Seconds = 5.0
    max_auth_wait: Seconds = 10.0
    # What a client can hold: a connection until its headers are in, a request until its
    # body is in, an idle keep-alive connection; and how many connections at once.
    header_timeout: Seconds = 10.0
    body_timeout: Seconds = 30.0
    idle_timeout: Seconds = 60.0
    max_connections: int = 1024

    def check(self, path: str) -> None:
        _check_port(self.port, f"{path}.port")
        _check_positive(self.max_batch, f"{path}.max_batch")
        _check_positive(self.max_request_bytes, f"{path}.max_request_bytes")
        _check_positive(self.max_connections, f"{path}.max_connections")
        for name in ("failed_auth_delay", "header_timeout", "body_timeout", "idle_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{path}.{name}", "must be positive")
        if self.max_auth_delay < self.failed_auth_delay:
            raise ConfigError(f"{path}.max_auth_delay", "must be at least failed_auth_delay")


@dataclass(frozen=True, slots=True)
class SmppTlsConfig:
    """A second SMPP listener that speaks TLS only, beside the plain one."""

    cert_file: str
    key_file: str
    port: int = 3550  # the port customary for SMPP over TLS

    def check(self, path: str) -> None:
        _check_port(self.port, f"{path}.port")


@dataclass(frozen=True, slots=True)
class SmppErrorCodes:
    """command_status for privacy rejections, in the vendor-specific range 0x400-0x4FF."""

    recipient_opted_out: int = 0x401
    consent_required: int = 0x402
    processing_restricted: int = 0x403

    def check(self, path: str) -> None:
        for name in ("recipient_opted_out", "consent_required", "processing_restricted"):
            if not 0x400 <= getattr(self, name) <= 0x4FF:
                raise ConfigError(f"{path}.{name}", "must be in 0x400-0x4FF")


@dataclass(frozen=True, slots=True)
class SmppConfig:
    host: str = "127.0.0.1"
    port: int = 2775
    max_command_length: int = 65536
    bind_timeout: Seconds = 30.0
    enquire_link_interval: Seconds = 30.0
    response_timeout: Seconds = 10.0
    deliver_window: int = 64
    notice_ttl: Seconds = 72 * 3600.0
    # Notices per tenant held in memory; the rest wait in the store until there is room.
    notice_memory: int = 1000
    # A deliver_sm answered with a temporary error goes again after this, doubling to the cap.
    notice_first_retry: Seconds = 1.0
    notice_max_retry: Seconds = 60.0
    failed_bind_delay: Seconds = 0.5
    max_bind_delay: Seconds = 8.0
    service_types: dict[str, str] = field(
        default_factory=lambda: {"MKT": "marketing", "TXN": "transactional"}
    )
    error_codes: SmppErrorCodes = field(default_factory=SmppErrorCodes)
    # Each tenant's smpp.error_body overrides it; a bind naming no tenant gets this.
    error_body: ErrorBody = ErrorBody.NUL
    tls: SmppTlsConfig | None = None

    def check(self, path: str) -> None:
        """Purposes named by ``service_types`` are checked by `Config.check`."""
        _check_port(self.port, f"{path}.port")
        _check_positive(self.deliver_window, f"{path}.deliver_window")
        _check_positive(self.notice_memory, f"{path}.notice_memory")
        if not 0 < self.notice_first_retry <= self.notice_max_retry:
            raise ConfigError(
                f"{path}.notice_first_retry", "must be positive, at most notice_max_retry"
            )
        if not 16 <= self.max_command_length <= 16 * 1024 * 1024:
            raise ConfigError(f"{path}.max_command_length", "must be 16-16777216")
        for service_type in self.service_types:
            if len(service_type) > 5:
                raise ConfigError(
                    f"{path}.service_types.{service_type}", "service_type is 5 chars max"
                )


@dataclass(frozen=True, slots=True)
class StorageConfig:
    path: str = "var/smsgw.sqlite3"
    # "normal" survives a process crash (WAL); "full" also survives power loss.
    synchronous: Synchronous = Synchronous.NORMAL
    backend: StorageBackend = StorageBackend.SQLITE
    # backend = "postgres": the server every instance of the gateway shares.
    dsn: str = ""

    def check(self, path: str) -> None:
        if self.backend is StorageBackend.POSTGRES and not self.dsn.startswith(
            ("postgresql://", "postgres://")
        ):
            raise ConfigError(f"{path}.dsn", "backend 'postgres' needs a postgresql:// DSN")


@dataclass(frozen=True, slots=True)
class InstanceConfig:
    """This process among several sharing one PostgreSQL store; "" means host name:HTTP port."""

    id: str = ""

    def check(self, path: str) -> None:
        if len(self.id) > 64 or any(not (c.isalnum() or c in "-_.:") for c in self.id):
            raise ConfigError(f"{path}.id", "at most 64 letters, digits and - _ . :")


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """How instances sharing a PostgreSQL store keep track of each other and what they tell
    each other (unused with SQLite)."""

    # Each instance writes its heartbeat this often...
    heartbeat_interval: Seconds = 2.0
    # ...and one whose last is older than this is dead: its SMPP binds stop counting.
    dead_after: Seconds = 10.0
    # A tenant's max_submit_rate is shared through the database in leases of this many
    # seconds' worth of tokens (at least one), so no submit waits for a round trip.
    rate_lease: Seconds = 0.1
    # A receipt or MO this instance holds in memory, and a message on its way it accepted,
    # is held for this long, renewed every third of it: the time after which another
    # instance delivers what a killed one held.
    notice_lease: Seconds = 30.0
    # How often an instance with a bound receiver looks for notices nobody holds, in case
    # the notification that should have woken it was lost, and any instance for messages
    # on their way that nobody holds.
    notice_poll: Seconds = 2.0
    # How often an instance says which tenants' event streams it has subscribers for.
    announce_interval: Seconds = 10.0

    def check(self, path: str) -> None:
        for key in ("notice_lease", "notice_poll", "announce_interval"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{path}.{key}", "must be positive")
        if self.heartbeat_interval <= 0:
            raise ConfigError(f"{path}.heartbeat_interval", "must be positive")
        if self.dead_after < 2 * self.heartbeat_interval:
            raise ConfigError(f"{path}.dead_after", "must be at least twice heartbeat_interval")
        if not 0 < self.rate_lease <= 1:
            raise ConfigError(f"{path}.rate_lease", "must be above 0 and at most 1s")


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    pseudonymise_after: Seconds = 30 * 86400.0
    delete_after: Seconds = 365 * 86400.0
    interval: Seconds = 3600.0

    def check(self, path: str) -> None:
        if self.interval <= 0:
            raise ConfigError(f"{path}.interval", "must be positive")
        if self.delete_after <= self.pseudonymise_after:
            raise ConfigError(f"{path}.delete_after", "must be longer than pseudonymise_after")


@dataclass(frozen=True, slots=True)
class PurposeConfig:
    """A purpose of processing; ``requires_consent`` purposes need a recorded opt-in."""

    name: str
    requires_consent: bool = False

    def check(self, path: str) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", self.name):
            raise ConfigError(f"{path}.name", "use a lower-case token")


@dataclass(frozen=True, slots=True)
class PrivacyConfig:
    key_file: str = "var/keys.json"
    # backend = "postgres": the key-encryption key wrapping the keys kept in the database.
    kek_file: str = ""
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    purposes: tuple[PurposeConfig, ...] = (
        PurposeConfig("transactional"),
        PurposeConfig("marketing", requires_consent=True),
    )
    # Recipients whose consent state is kept in memory; the rest is an index lookup away.
    registry_cache: int = 100_000
    # Delivered bodies (the handset inbox) are erased after this.
    body_ttl: Seconds = 3600.0
    # Pseudonyms of old traffic change with each epoch of this many months.
    months_per_epoch: int = 1
    # Timestamps of pseudonymised rows are rounded down to a multiple of this.
    coarsen_to: Seconds = 3600.0

    def check(self, path: str) -> None:
        names = self.purpose_names()
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ConfigError(f"{path}.purposes[{i}].name", f"duplicate purpose {name!r}")
        _check_positive(self.registry_cache, f"{path}.registry_cache")
        if self.months_per_epoch not in (1, 2, 3, 4, 6, 12):
            raise ConfigError(f"{path}.months_per_epoch", "must divide 12: 1, 2, 3, 4, 6 or 12")
        if self.coarsen_to <= 0:
            raise ConfigError(f"{path}.coarsen_to", "must be positive")

    def purpose_names(self) -> list[str]:
        return [purpose.name for purpose in self.purposes]


@dataclass(frozen=True, slots=True)
class SimulatorRule:
    """Chooses the outcome for recipients matching ``prefix`` or ``number``."""

    outcome: Outcome = Outcome.DELIVERED
    prefix: str = ""
    number: str = ""
    probability: float = 1.0
    latency: tuple[Seconds, ...] = ()
    submit_error: SubmitError = SubmitError.NONE

    def matches(self, recipient: str) -> bool:
        if self.number:
            return recipient == self.number
        return recipient.startswith(self.prefix)

    def check(self, path: str) -> None:
        if bool(self.prefix) == bool(self.number):
            raise ConfigError(path, "give exactly one of prefix or number")
        if not 0.0 < self.probability <= 1.0:
            raise ConfigError(f"{path}.probability", "must be in (0, 1]")
        if self.number:
            try:
                normalise_msisdn(self.number)
            except InvalidNumber:
                raise ConfigError(f"{path}.number", "not an E.164 number") from None
        elif not re.fullmatch(r"\+\d{1,15}", self.prefix):
            raise ConfigError(f"{path}.prefix", 'must be "+" followed by digits')
        _check_latency(self.latency, f"{path}.latency", required=False)


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    latency: tuple[Seconds, ...] = (0.05, 0.5)
    rules: tuple[SimulatorRule, ...] = ()
    # The reset routes (/v1/simulator/reset, DELETE .../handsets...): for test environments.
    allow_reset: bool = False

    def check(self, path: str) -> None:
        _check_latency(self.latency, f"{path}.latency", required=True)


@dataclass(frozen=True, slots=True)
class CallbackConfig:
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "::1", "localhost")
    max_attempts: int = 6
    first_retry: Seconds = 0.5
    max_retry: Seconds = 30.0
    give_up_after: Seconds = 600.0
    timeout: Seconds = 5.0

    def check(self, path: str) -> None:
        _check_positive(self.max_attempts, f"{path}.max_attempts")

    def allows(self, url: str) -> bool:
        """True for an http(s) URL whose host is on the allow-list (``*`` allows every host).

        The list keeps the gateway from being turned against internal services.
        """
        try:
            parts = urlsplit(url)
            host = parts.hostname
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not host:
            return False
        return "*" in self.allowed_hosts or host.lower() in self.allowed_hosts


@dataclass(frozen=True, slots=True)
class MessagesConfig:
    max_segments: int = 10
    max_client_ref: int = 64
    # The validity of a message that names none, and the cap on one that names longer,
    # counted from when it is due (its send_at, else its submission).
    max_validity: Seconds = 48 * 3600.0
    # Scheduled messages one tenant may have waiting for their time (all held in memory).
    max_scheduled: int = 10_000

    def check(self, path: str) -> None:
        _check_positive(self.max_segments, f"{path}.max_segments")
        _check_positive(self.max_scheduled, f"{path}.max_scheduled")
        if self.max_validity <= 0:
            raise ConfigError(f"{path}.max_validity", "must be positive")


@dataclass(frozen=True, slots=True)
class SmppCredentials:
    system_id: str
    password: str = field(repr=False)
    max_sessions: int = 10
    # The older spelling of the tenant's max_submit_rate, still read (see TenantConfig).
    max_submit_rate: float = 0.0
    address_policy: AddressPolicy = AddressPolicy.LENIENT
    # None: [smpp] error_body.
    error_body: ErrorBody | None = None
    message_id_format: MessageIdFormat = MessageIdFormat.HEX
    default_coding: DefaultCoding = DefaultCoding.GSM

    def check(self, path: str) -> None:
        """Unique system ids across tenants are checked by `Config.check`."""
        if not 1 <= len(self.system_id) <= 15:
            raise ConfigError(f"{path}.system_id", "must be 1-15 characters")
        if not 1 <= len(self.password) <= 8:
            raise ConfigError(f"{path}.password", "must be 1-8 characters")
        if self.max_sessions < 1:
            raise ConfigError(f"{path}.max_sessions", "must be at least 1")
        if self.max_submit_rate < 0:
            raise ConfigError(f"{path}.max_submit_rate", "must not be negative")


@dataclass(frozen=True, slots=True)
class KeywordsConfig:
    """A tenant's own words, added to the default STOP / START / HELP families."""

    stop: tuple[str, ...] = ()
    start: tuple[str, ...] = ()
    help: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RepliesConfig:
    """What a handset gets back after a keyword; ``{sender}`` is the number it wrote to."""

    stop: str = "You will receive no more messages from {sender}. Reply START to undo."
    start: str = "You will receive messages from {sender} again. Reply STOP to opt out."
    help: str = "Reply STOP to opt out, START to opt back in."


@dataclass(frozen=True, slots=True)
class TwilioConfig:
    """The tenant as a Twilio account: its Messages API, webhooks and test numbers.

    ``auth_token`` may be a ``sha256:`` digest: enough to check HTTP Basic auth, not
    to sign webhooks, so a digest token refuses ``sms_url`` here and ``StatusCallback``
    at submit time (docs/twilio.md).
    """

    account_sid: str
    auth_token: str = field(repr=False)
    # API key SID (SK...) -> its secret, in clear or as a sha256: digest; Basic auth too.
    api_keys: dict[str, str] = field(default_factory=dict, repr=False)
    # Where a handset's reply to one of the tenant's numbers is POSTed, Twilio-shaped.
    sms_url: str = ""
    # Twilio's magic test numbers (+15005550006 and the rest; see docs/twilio.md).
    test_numbers: bool = False

    @property
    def can_sign(self) -> bool:
        """Whether the token is known in clear, as signing a webhook needs."""
        return not self.auth_token.startswith("sha256:")

    def check(self, path: str) -> None:
        """That the sms_url is on the callback allow-list is `Config.check`'s."""
        if not re.fullmatch(r"AC[0-9a-f]{32}", self.account_sid):
            raise ConfigError(f"{path}.account_sid", 'must be "AC" and 32 lower-case hex digits')
        _check_secret(self.auth_token, f"{path}.auth_token", min_length=16)
        for sid, secret in self.api_keys.items():
            if not re.fullmatch(r"SK[0-9a-f]{32}", sid):
                raise ConfigError(f"{path}.api_keys.{sid}", 'must be "SK" and 32 hex digits')
            _check_secret(secret, f"{path}.api_keys.{sid}", min_length=16)
        if self.sms_url and not self.can_sign:
            raise ConfigError(
                f"{path}.sms_url", "needs the auth_token in clear to sign (not a sha256: digest)"
            )

    def secret_digests(self, username: str) -> tuple[bytes, ...]:
        """Digests of the secrets HTTP Basic auth accepts for ``username`` (none: unknown)."""
        if username == self.account_sid:
            return (api_key_digest(self.auth_token),)
        if username in self.api_keys:
            return (api_key_digest(self.api_keys[username]),)
        return ()


@dataclass(frozen=True, slots=True)
class TenantConfig:
    id: str
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    senders: tuple[str, ...] = ()
    smpp: SmppCredentials | None = None
    default_purpose: str = "transactional"
    # ISO 3166 code for national number forms; None: only international forms are numbers.
    default_country: str | None = None
    # Mobile-originated messages are POSTed here (as well as sent to bound receivers).
    mo_url: str = ""
    keywords: KeywordsConfig = field(default_factory=KeywordsConfig)
    replies: RepliesConfig = field(default_factory=RepliesConfig)
    # "tenant": STOP opts out of every sender of the tenant; "sender": of the one written to.
    stop_scope: StopScope = StopScope.TENANT
    # Submits per second over all the tenant's front ends together; 0 means no limit.
    max_submit_rate: float = 0.0
    # The Twilio-compatible Messages API for this tenant (docs/twilio.md).
    twilio: TwilioConfig | None = None

    @property
    def sending_addresses(self) -> tuple[str, ...]:
        """``senders``, and Twilio's valid test sender when ``twilio.test_numbers`` is on."""
        if self.twilio is not None and self.twilio.test_numbers:
            return (*self.senders, TWILIO_TEST_SENDER)
        return self.senders

    @property
    def submit_rate(self) -> float:
        """``max_submit_rate``, or the older ``smpp.max_submit_rate`` when only that is set."""
        if self.max_submit_rate or self.smpp is None:
            return self.max_submit_rate
        return self.smpp.max_submit_rate

    def __post_init__(self) -> None:
        # Older configs (and config.toml's example until now) wrote "" for none.
        if self.default_country == "":
            object.__setattr__(self, "default_country", None)

    def api_key_digests(self) -> tuple[bytes, ...]:
        """SHA-256 digests of the API keys, whether given in clear or as ``sha256:<hex>``."""
        return tuple(api_key_digest(key) for key in self.api_keys)

    def check(self, path: str) -> None:
        """Uniqueness across tenants and references to other sections: `Config.check`."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", self.id):
            raise ConfigError(f"{path}.id", "use 1-64 letters, digits, '_', '.' or '-'")
        for k, key in enumerate(self.api_keys):
            _check_secret(key, f"{path}.api_keys[{k}]", min_length=8)
        if not self.senders:
            raise ConfigError(f"{path}.senders", "at least one sender is needed")
        for s, sender in enumerate(self.senders):
            _check_sender(sender, self.default_country, f"{path}.senders[{s}]")
        if self.default_country is not None and self.default_country not in SUPPORTED_REGIONS:
            raise ConfigError(f"{path}.default_country", "use an ISO 3166 code such as SE")
        if self.max_submit_rate < 0:
            raise ConfigError(f"{path}.max_submit_rate", "must not be negative")
        if self.max_submit_rate and self.smpp is not None and self.smpp.max_submit_rate:
            raise ConfigError(
                f"{path}.smpp.max_submit_rate", "set max_submit_rate once, at the tenant"
            )


@dataclass(frozen=True, slots=True)
class EventsConfig:
    """The live event stream (``GET /v1/events``)."""

    # Events kept per tenant, so a subscriber that reconnects with its last id misses none.
    buffer: int = 10_000
    # Events one subscriber may fall behind by before it is dropped (it may reconnect).
    subscriber_queue: int = 1000
    # A ": ping" comment this often keeps an idle stream open (and finds a gone client).
    ping_interval: Seconds = 15.0

    def check(self, path: str) -> None:
        _check_positive(self.buffer, f"{path}.buffer")
        _check_positive(self.subscriber_queue, f"{path}.subscriber_queue")
        if self.ping_interval <= 0:
            raise ConfigError(f"{path}.ping_interval", "must be positive")


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """Operators' access to the admin API (``/admin/v1``), which the CLI uses."""

    # Operator tokens, in clear or as "sha256:<hex>"; none configured means no admin API.
    tokens: tuple[str, ...] = field(default=(), repr=False)
    # Answer peers other than loopback too (only sensible with [http.tls]).
    allow_remote: bool = False

    def token_digests(self) -> tuple[bytes, ...]:
        return tuple(api_key_digest(token) for token in self.tokens)

    def check(self, path: str) -> None:
        """Tokens are long; that none is also a tenant's API key is `Config.check`'s."""
        for i, token in enumerate(self.tokens):
            _check_secret(token, f"{path}.tokens[{i}]", min_length=16)


@dataclass(frozen=True, slots=True)
class Config:
    http: HttpConfig = field(default_factory=HttpConfig)
    smpp: SmppConfig = field(default_factory=SmppConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    callbacks: CallbackConfig = field(default_factory=CallbackConfig)
    messages: MessagesConfig = field(default_factory=MessagesConfig)
    log: LogConfig = field(default_factory=LogConfig)
    tenants: tuple[TenantConfig, ...] = ()
    admin: AdminConfig = field(default_factory=AdminConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    instance: InstanceConfig = field(default_factory=InstanceConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def check(self, path: str) -> None:
        """Rules that span sections: uniqueness across tenants, cross-references."""
        purposes = self.privacy.purpose_names()
        for service_type, purpose in self.smpp.service_types.items():
            if purpose not in purposes:
                raise ConfigError(
                    _join(path, f"smpp.service_types.{service_type}"), "not a configured purpose"
                )
        if not self.tenants:
            raise ConfigError(_join(path, "tenants"), "at least one tenant is needed")
        if self.storage.backend is StorageBackend.POSTGRES and not self.privacy.kek_file:
            raise ConfigError(
                _join(path, "privacy.kek_file"),
                "backend 'postgres' keeps keys in the database: give a key-encryption key file",
            )
        ids: set[str] = set()
        twilio_users: set[str] = set()
        digests: set[bytes] = set()
        system_ids: set[str] = set()
        for i, tenant in enumerate(self.tenants):
            where = _join(path, f"tenants[{i}]")
            if tenant.id in ids:
                raise ConfigError(f"{where}.id", f"duplicate tenant id {tenant.id!r}")
            ids.add(tenant.id)
            for k, key in enumerate(tenant.api_keys):
                _check_unique_secret(key, f"{where}.api_keys[{k}]", digests)
            if tenant.twilio is not None:
                # Each is a Basic auth username: it must name one tenant.
                for key, sid in (
                    ("account_sid", tenant.twilio.account_sid),
                    *((f"api_keys.{k}", k) for k in tenant.twilio.api_keys),
                ):
                    if sid in twilio_users:
                        raise ConfigError(f"{where}.twilio.{key}", "duplicate Twilio SID")
                    twilio_users.add(sid)
            if tenant.smpp is not None:
                if tenant.smpp.system_id in system_ids:
                    raise ConfigError(f"{where}.smpp.system_id", "duplicate system_id")
                system_ids.add(tenant.smpp.system_id)
        for i, token in enumerate(self.admin.tokens):
            _check_unique_secret(token, _join(path, f"admin.tokens[{i}]"), digests)
        for i, tenant in enumerate(self.tenants):
            where = _join(path, f"tenants[{i}]")
            if tenant.default_purpose not in purposes:
                raise ConfigError(f"{where}.default_purpose", "not a configured purpose")
            if tenant.mo_url and not self.callbacks.allows(tenant.mo_url):
                raise ConfigError(
                    f"{where}.mo_url", "not an http(s) URL on callbacks.allowed_hosts"
                )
            twilio = tenant.twilio
            if twilio is not None and twilio.sms_url and not self.callbacks.allows(twilio.sms_url):
                raise ConfigError(
                    f"{where}.twilio.sms_url", "not an http(s) URL on callbacks.allowed_hosts"
                )


@functools.lru_cache(maxsize=1024)
def api_key_digest(key: str) -> bytes:
    """The SHA-256 digest under which an API key is looked up.

    Cached (only configured keys come here): every request checks its tenant's digests.
    """
    if key.startswith("sha256:"):
        return bytes.fromhex(key.removeprefix("sha256:"))
    return hashlib.sha256(key.encode()).digest()


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; every problem is a `ConfigError`."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError("", f"cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"not valid TOML: {exc}") from None
    return config_from_dict(raw)


def config_from_dict(raw: dict[str, Any]) -> Config:
    config: Config = _build(Config, raw, "")
    return config


def _build(cls: type, data: object, path: str) -> Any:
    """An instance of the dataclass ``cls`` from the table ``data``, its ``check`` passed."""
    if not isinstance(data, dict):
        raise ConfigError(path, f"expected a table, got {_type_name(data)}")
    hints = typing.get_type_hints(cls, include_extras=True)
    known = {f.name for f in fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(_join(path, key), "unknown key")
    values: dict[str, Any] = {}
    for f in fields(cls):
        key_path = _join(path, f.name)
        if f.name in data:
            values[f.name] = _convert(hints[f.name], data[f.name], key_path)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(key_path, "missing")
    section = cls(**values)
    if hasattr(section, "check"):
        section.check(path)
    return section


def _convert(hint: Any, value: object, path: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *extras = typing.get_args(hint)
        if DURATION in extras:
            if not isinstance(value, str):
                raise ConfigError(path, f'expected a duration string like "2s", got {value!r}')
            try:
                return parse_duration(value)
            except ValueError as exc:
                raise ConfigError(path, str(exc)) from None
        return _convert(base, value, path)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(options[0], value, path)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a table, got {_type_name(value)}")
        key_type, value_type = typing.get_args(hint)
        return {
            _convert(key_type, k, path): _convert(value_type, v, _join(path, k))
            for k, v in value.items()
        }
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(path, f"expected an array, got {_type_name(value)}")
        item = typing.get_args(hint)[0]
        return tuple(_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if isinstance(hint, type) and is_dataclass(hint):
        return _build(hint, value, path)
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        allowed = [m.value for m in hint]
        if value not in allowed:
            raise ConfigError(path, f"must be one of {', '.join(allowed)}, got {value!r}")
        return hint(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"expected true or false, got {_type_name(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(path, f"expected a number, got {_type_name(value)}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"expected an integer, got {_type_name(value)}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"expected a string, got {_type_name(value)}")
        return value
    raise TypeError(f"unsupported config type {hint!r} at {path}")


def _check_secret(secret: str, path: str, min_length: int) -> None:
    """A key or token, in clear or as a digest."""
    if secret.startswith("sha256:") and not re.fullmatch(r"sha256:[0-9a-fA-F]{64}", secret):
        raise ConfigError(path, "a sha256: digest needs 64 hex digits")
    if len(secret) < min_length:
        raise ConfigError(path, f"too short (at least {min_length} characters)")


def _check_unique_secret(secret: str, path: str, seen: set[bytes]) -> None:
    """A key or token not seen before (as a tenant's key or an operator's token)."""
    digest = api_key_digest(secret)
    if digest in seen:
        raise ConfigError(path, "duplicate API key or token")
    seen.add(digest)


def _check_sender(sender: str, default_country: str | None, path: str) -> None:
    if is_short_code(sender):
        return
    if is_numeric_address(sender):
        try:
            normalise_msisdn(sender, default_country)
        except InvalidNumber as exc:
            raise ConfigError(path, f"not a valid number: {exc}") from None
    elif not re.fullmatch(r"[A-Za-z0-9 ._-]{1,11}", sender):
        raise ConfigError(path, "an alphanumeric sender has 1-11 letters, digits or ' ._-'")


def _check_latency(latency: tuple[float, ...], path: str, *, required: bool) -> None:
    if not latency and not required:
        return
    if len(latency) != 2 or latency[0] > latency[1]:
        raise ConfigError(path, 'expected ["min", "max"] with min <= max')


def _check_port(port: int, path: str) -> None:
    if not 0 <= port <= 65535:
        raise ConfigError(path, "must be 0-65535")


def _check_positive(value: int, path: str) -> None:
    if value < 1:
        raise ConfigError(path, "must be at least 1")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(value: object) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
