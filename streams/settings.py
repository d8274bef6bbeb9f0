"""The one typed settings object, read from the environment and validated at start-up.

Every variable is listed in ``VARIABLES`` with its default and meaning; the README's table
is written from the same list. A bad value raises :class:`ConfigError` whose message names
the variable and the problem in one line.
"""

from __future__ import annotations

import hashlib
import os
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal, TypeVar

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    ValidationError,
)

from streams.domain.churn_rules import ChurnRules
from streams.domain.followups import FollowUpRules
from streams.domain.rules import Rules

# The largest record the producers send (their max_request_size, Kafka's default limit): a
# dead letter of the largest message accepted (base64) and the largest state must fit.
MAX_RECORD_BYTES = 1_000_000
# The erasure bound is split into the topics' retention and compaction times (streams/topics.py);
# below this, they fall under what a broker does in one pass.
MIN_ERASURE_BOUND = timedelta(seconds=20)
T = TypeVar("T")
N = TypeVar("N", int, float)


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    meaning: str


VARIABLES: tuple[Variable, ...] = (
    Variable("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092", "Kafka brokers, host:port[,host:port]"),
    Variable("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT",
             "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
    Variable("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512",
             "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with a SASL protocol)"),
    Variable("KAFKA_SASL_USERNAME", "", "SASL user name"),
    Variable("KAFKA_SASL_PASSWORD", "", "SASL password (or give KAFKA_SASL_PASSWORD_FILE)"),
    Variable("KAFKA_SASL_PASSWORD_FILE", "", "file holding the SASL password (a mounted secret)"),
    Variable("KAFKA_SSL_CA_FILE", "",
             "PEM file of the CA certificates to trust (empty: the system's)"),
    Variable("KAFKA_SSL_CERT_FILE", "", "PEM client certificate (mutual TLS), with the key file"),
    Variable("KAFKA_SSL_KEY_FILE", "", "PEM private key of the client certificate"),
    Variable("KAFKA_SSL_CHECK_HOSTNAME", "true",
             "check that the broker's certificate names the host connected to"),
    Variable("VALUESTREAM_REPLICATION_FACTOR", "1",
             "replicas of every topic valuestream creates (3 in production)"),
    Variable("VALUESTREAM_DATA_DIR", ".local/data", "where the worker keeps its RocksDB state"),
    Variable("VALUESTREAM_WEB_HOST", "127.0.0.1",
             "address other workers reach this worker's HTTP server at (advertised)"),
    Variable("VALUESTREAM_WEB_BIND", "",
             "address the HTTP server binds (empty: the web host; `0.0.0.0` in a container)"),
    Variable("VALUESTREAM_WEB_PORT", "6066", "HTTP port of the worker"),
    Variable("VALUESTREAM_API_TOKEN", "",
             "bearer token required on /customers when set (or give VALUESTREAM_API_TOKEN_FILE)"),
    Variable("VALUESTREAM_API_TOKEN_FILE", "", "file holding the API token (a mounted secret)"),
    Variable("VALUESTREAM_ALLOWED_HOSTS", "",
             "host names /customers answers to, comma-separated, besides the web host and "
             "localhost; `*` for any"),
    Variable("VALUESTREAM_TOPIC_PREFIX", "", "prefix put before every topic name"),
    Variable("VALUESTREAM_PARTITIONS", "8", "partitions of the topics valuestream creates"),
    Variable("VALUESTREAM_CLOCK", "wall", "`wall`, or `event` (now = largest occurred_at seen)"),
    Variable("VALUESTREAM_CURRENCY", "USD", "base currency (ISO 4217) of every amount reported"),
    Variable("VALUESTREAM_FX_RATES", "", 'JSON file of rates to the base, e.g. {"EUR": 1.08}'),
    Variable("VALUESTREAM_DEFAULT_MARGIN", "0.30", "margin assumed for a line without unit_cost"),
    Variable("VALUESTREAM_TICKET_COST", "0", "cost of handling one support ticket"),
    Variable("VALUESTREAM_APP_ID", "valuestream",
             "consumer group and internal topics (both under the topic prefix)"),
    Variable("VALUESTREAM_DEDUP_DAYS", "35", "days an event_id is remembered for de-duplication"),
    Variable("VALUESTREAM_ERASURE_BOUND", "30d",
             "time within which every record naming an erased customer leaves every topic and "
             "store (`30d`, `12h`, `90s`); sets the topics' retention and compaction"),
    Variable("VALUESTREAM_ERASURE_KEY", "",
             "secret for the keyed hash of erasure markers, the same on every worker (or give "
             "VALUESTREAM_ERASURE_KEY_FILE); unset: derived from the app id, which is weaker"),
    Variable("VALUESTREAM_ERASURE_KEY_FILE", "", "file holding the erasure key (a mounted secret)"),
    Variable("VALUESTREAM_ORPHAN_DAYS", "7", "days an event for an unknown order stays parked"),
    Variable("VALUESTREAM_TICK_SECONDS", "1.0",
             "how often time-driven work is checked when no events arrive"),
    Variable("VALUESTREAM_BATCH_SIZE", "5000", "most input messages processed in one batch"),
    Variable("VALUESTREAM_BATCH_WAIT_MS", "5",
             "how long a batch waits for more messages once its first has arrived"),
    Variable("VALUESTREAM_INPUT_IDLE_MS", "500",
             "how long a partition waits for a quiet input topic before going on without it"),
    Variable("VALUESTREAM_LIVE_DELAY_MS", "50",
             "on the wall clock, how long a live event waits for the other topics' events of "
             "the same moment (what takes longer to become readable is late; see *Time*)"),
    Variable("VALUESTREAM_MAX_MESSAGE_BYTES", "262144",
             "largest input message (key and value) accepted; larger: `message_too_large`"),
    Variable("VALUESTREAM_MAX_PARKED", "100",
             "most events parked per customer for orders not known yet; more: `too_many_parked`"),
    Variable("VALUESTREAM_MAX_PARKED_BYTES", "262144",
             "most bytes of parked events per customer; more: `too_many_parked`"),
    Variable("VALUESTREAM_MAX_STATE_BYTES", "524288",
             "largest stored state of one customer; events that would grow it past this: "
             "`state_too_large`"),
    Variable("VALUESTREAM_STATE_CACHE", "20000", "customers kept decoded in memory per worker"),
    Variable("VALUESTREAM_CHURN_MEDIUM", "40", "churn score (0-100) from which the risk is medium"),
    Variable("VALUESTREAM_CHURN_HIGH", "70", "churn score from which the risk is high"),
    Variable("VALUESTREAM_CHURN_HYSTERESIS", "10",
             "points below a threshold before a level is left downwards"),
    Variable("VALUESTREAM_FOLLOW_UPS", "{}",
             "JSON object overriding follow-up rules, e.g. {\"cooldown_days\": 14, \"cap\": 3}"),
    Variable("VALUESTREAM_SESSION_TIMEOUT", "10",
              "seconds until a silent worker's partitions move"),
    Variable("VALUESTREAM_LOG_LEVEL", "info", "worker log level: debug, info, warning, error"),
    Variable("VALUESTREAM_LOG_FORMAT", "text",
             "worker log lines: `text`, or `json` (one object per line, for log collectors)"),
)

_DEFAULTS = {v.name: v.default for v in VARIABLES}
_TOPIC_PREFIX = re.compile(r"^[A-Za-z0-9._-]*$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_HOST_PORT = re.compile(r"^[^\s:,]+:\d{1,5}$")


@dataclass(frozen=True)
class KafkaSecurity:
    """How every client authenticates to Kafka and checks it (``streams/clients.py``)."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None  # None without SASL
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    check_hostname: bool = True

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str
    kafka_security: KafkaSecurity
    replication_factor: int
    data_dir: Path
    web_host: str
    web_bind: str
    web_port: int
    api_token: str | None = field(repr=False)
    allowed_hosts: frozenset[str] | None  # None: any
    topic_prefix: str
    partitions: int
    clock: Literal["wall", "event"]
    currency: str
    fx_rates: Mapping[str, Decimal] = field(repr=False)
    default_margin: Decimal
    ticket_cost: Decimal
    app_id: str
    dedup_days: int
    erasure_bound: timedelta
    erasure_key: str | None = field(repr=False)  # None: derived from the group id
    orphan_days: int
    tick_seconds: float
    batch_size: int
    batch_wait: float  # seconds
    input_idle: float  # seconds
    live_delay: float  # seconds
    max_message_bytes: int
    max_parked: int
    max_parked_bytes: int
    max_state_bytes: int
    state_cache: int
    churn_medium: int
    churn_high: int
    churn_hysteresis: int
    follow_ups: FollowUpRules
    session_timeout: float
    log_level: str
    log_format: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every variable; raise ConfigError naming the first bad one."""
        source = os.environ if env is None else env

        def raw(name: str) -> str:
            return source.get(name, _DEFAULTS[name]).strip()

        def parsed(name: str, parse: Callable[[str], T]) -> T:
            value = raw(name)
            try:
                return parse(value)
            except (ValueError, InvalidOperation) as exc:
                raise ConfigError(f"{name}={value!r}: {exc}") from None

        currency = parsed("VALUESTREAM_CURRENCY", _currency)
        medium = parsed("VALUESTREAM_CHURN_MEDIUM", _int_in(1, 99))
        high = parsed("VALUESTREAM_CHURN_HIGH", _int_in(2, 100))
        hysteresis = parsed("VALUESTREAM_CHURN_HYSTERESIS", _int_in(0, 50))
        if not hysteresis < medium < high:
            raise ConfigError(
                f"VALUESTREAM_CHURN_HYSTERESIS={hysteresis}, VALUESTREAM_CHURN_MEDIUM={medium}, "
                f"VALUESTREAM_CHURN_HIGH={high}: expected hysteresis < medium < high"
            )
        max_state_bytes = parsed("VALUESTREAM_MAX_STATE_BYTES",
                                 _int_in(65_536, MAX_RECORD_BYTES - 65_536))
        max_parked_bytes = parsed("VALUESTREAM_MAX_PARKED_BYTES", _int_in(1_024, 10**9))
        if max_parked_bytes > max_state_bytes // 2:
            raise ConfigError(
                f"VALUESTREAM_MAX_PARKED_BYTES={max_parked_bytes}: expected at most half of "
                f"VALUESTREAM_MAX_STATE_BYTES ({max_state_bytes})")
        return cls(
            bootstrap_servers=parsed("KAFKA_BOOTSTRAP_SERVERS", _bootstrap),
            kafka_security=_kafka_security(raw),
            replication_factor=parsed("VALUESTREAM_REPLICATION_FACTOR", _int_in(1, 7)),
            data_dir=Path(raw("VALUESTREAM_DATA_DIR") or _DEFAULTS["VALUESTREAM_DATA_DIR"]),
            web_host=parsed("VALUESTREAM_WEB_HOST", _non_empty),
            web_bind=raw("VALUESTREAM_WEB_BIND") or raw("VALUESTREAM_WEB_HOST"),
            web_port=parsed("VALUESTREAM_WEB_PORT", _int_in(1, 65535)),
            api_token=_secret("VALUESTREAM_API_TOKEN", raw("VALUESTREAM_API_TOKEN"),
                              raw("VALUESTREAM_API_TOKEN_FILE")),
            allowed_hosts=_allowed_hosts(raw("VALUESTREAM_ALLOWED_HOSTS"),
                                         raw("VALUESTREAM_WEB_HOST")),
            topic_prefix=parsed("VALUESTREAM_TOPIC_PREFIX", _topic_prefix),
            partitions=parsed("VALUESTREAM_PARTITIONS", _int_in(1, 10_000)),
            clock=parsed("VALUESTREAM_CLOCK", _choice("wall", "event")),  # type: ignore[arg-type]
            currency=currency,
            fx_rates=parsed("VALUESTREAM_FX_RATES", lambda path: _fx_rates(path, currency)),
            default_margin=parsed("VALUESTREAM_DEFAULT_MARGIN", _decimal_in(0, 1)),
            ticket_cost=parsed("VALUESTREAM_TICKET_COST", _decimal_in(0, None)),
            app_id=parsed("VALUESTREAM_APP_ID", _topic_prefix_non_empty),
            dedup_days=parsed("VALUESTREAM_DEDUP_DAYS", _int_in(30, 3650)),
            erasure_bound=parsed("VALUESTREAM_ERASURE_BOUND", _duration(MIN_ERASURE_BOUND)),
            erasure_key=_secret("VALUESTREAM_ERASURE_KEY", raw("VALUESTREAM_ERASURE_KEY"),
                                raw("VALUESTREAM_ERASURE_KEY_FILE")),
            orphan_days=parsed("VALUESTREAM_ORPHAN_DAYS", _int_in(1, 365)),
            tick_seconds=parsed("VALUESTREAM_TICK_SECONDS", _float_in(0.05, 60.0)),
            batch_size=parsed("VALUESTREAM_BATCH_SIZE", _int_in(1, 100_000)),
            batch_wait=parsed("VALUESTREAM_BATCH_WAIT_MS", _int_in(0, 10_000)) / 1000,
            input_idle=parsed("VALUESTREAM_INPUT_IDLE_MS", _int_in(0, 60_000)) / 1000,
            live_delay=parsed("VALUESTREAM_LIVE_DELAY_MS", _int_in(0, 60_000)) / 1000,
            max_message_bytes=parsed("VALUESTREAM_MAX_MESSAGE_BYTES",
                                     _int_in(1_024, MAX_RECORD_BYTES * 2 // 3)),
            max_parked=parsed("VALUESTREAM_MAX_PARKED", _int_in(1, 10_000)),
            max_parked_bytes=max_parked_bytes,
            max_state_bytes=max_state_bytes,
            state_cache=parsed("VALUESTREAM_STATE_CACHE", _int_in(0, 10_000_000)),
            churn_medium=medium,
            churn_high=high,
            churn_hysteresis=hysteresis,
            follow_ups=parsed("VALUESTREAM_FOLLOW_UPS", _follow_up_rules),
            session_timeout=parsed("VALUESTREAM_SESSION_TIMEOUT", _float_in(6.0, 300.0)),
            log_level=parsed("VALUESTREAM_LOG_LEVEL", _choice("debug", "info", "warning", "error")),
            log_format=parsed("VALUESTREAM_LOG_FORMAT", _choice("text", "json")),
        )

    def topic(self, name: str) -> str:
        """The full name of a topic, with the configured prefix."""
        return f"{self.topic_prefix}{name}"

    @property
    def group_id(self) -> str:
        """The consumer group, and the name internal topics start with: the app id under
        the topic prefix, so that two deployments on one cluster never share state."""
        return f"{self.topic_prefix}{self.app_id}"

    @property
    def marker_secret(self) -> bytes:
        """The key of erasure markers' hashes: the configured secret, else one derived from
        the group id (the same on every worker of a deployment, but guessable)."""
        if self.erasure_key is not None:
            return self.erasure_key.encode()
        return hashlib.sha256(f"valuestream erasure markers|{self.group_id}".encode()).digest()

    def rules(self) -> Rules:
        """The domain's configurable rules."""
        return Rules(
            currency=self.currency,
            fx_rates=self.fx_rates,
            default_margin=self.default_margin,
            ticket_cost=self.ticket_cost,
            dedup_window=timedelta(days=self.dedup_days),
            orphan_ttl=timedelta(days=self.orphan_days),
            max_parked=self.max_parked,
            max_parked_bytes=self.max_parked_bytes,
            churn=ChurnRules(medium=self.churn_medium, high=self.churn_high,
                             hysteresis=self.churn_hysteresis),
            follow_ups=self.follow_ups,
        )


def _secret(name: str, value: str, path: str, min_length: int = 16) -> str | None:
    """A secret from the variable ``name`` or from the file named by ``name``_FILE."""
    if value and path:
        raise ConfigError(f"{name} and {name}_FILE: give one, not both")
    if path:
        try:
            value = Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE={path!r}: cannot read the file: "
                              f"{exc.strerror}") from None
        if not value:
            raise ConfigError(f"{name}_FILE={path!r}: the file is empty")
    if value and len(value) < min_length:
        raise ConfigError(f"{name}: expected at least {min_length} characters")
    return value or None


_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _kafka_security(raw: Callable[[str], str]) -> KafkaSecurity:
    protocol = raw("KAFKA_SECURITY_PROTOCOL").upper()
    if protocol not in _PROTOCOLS:
        raise ConfigError(f"KAFKA_SECURITY_PROTOCOL={raw('KAFKA_SECURITY_PROTOCOL')!r}: "
                          f"expected one of {', '.join(_PROTOCOLS)}")
    sasl, tls = protocol.startswith("SASL_"), protocol.endswith("SSL")
    mechanism = username = password = None
    if sasl:
        mechanism = raw("KAFKA_SASL_MECHANISM").upper()
        if mechanism not in _MECHANISMS:
            raise ConfigError(f"KAFKA_SASL_MECHANISM={raw('KAFKA_SASL_MECHANISM')!r}: "
                              f"expected one of {', '.join(_MECHANISMS)}")
        username = raw("KAFKA_SASL_USERNAME")
        if not username:
            raise ConfigError(f"KAFKA_SASL_USERNAME: required with KAFKA_SECURITY_PROTOCOL="
                              f"{protocol}")
        password = _secret("KAFKA_SASL_PASSWORD", raw("KAFKA_SASL_PASSWORD"),
                           raw("KAFKA_SASL_PASSWORD_FILE"), min_length=1)
        if password is None:
            raise ConfigError(f"KAFKA_SASL_PASSWORD: required with KAFKA_SECURITY_PROTOCOL="
                              f"{protocol} (or give KAFKA_SASL_PASSWORD_FILE)")
    files = {}
    for name in ("KAFKA_SSL_CA_FILE", "KAFKA_SSL_CERT_FILE", "KAFKA_SSL_KEY_FILE"):
        value = raw(name)
        if value and not tls:
            raise ConfigError(f"{name}: only used with KAFKA_SECURITY_PROTOCOL SSL or "
                              f"SASL_SSL, not {protocol}")
        if value and not Path(value).is_file():
            raise ConfigError(f"{name}={value!r}: no such file")
        files[name] = Path(value) if value else None
    if (files["KAFKA_SSL_CERT_FILE"] is None) != (files["KAFKA_SSL_KEY_FILE"] is None):
        raise ConfigError("KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE: give both or neither")
    check = raw("KAFKA_SSL_CHECK_HOSTNAME").lower()
    if check not in ("true", "false"):
        raise ConfigError(f"KAFKA_SSL_CHECK_HOSTNAME={check!r}: expected true or false")
    _check_tls_files(files)
    return KafkaSecurity(protocol, mechanism, username, password,  # type: ignore[arg-type]
                         files["KAFKA_SSL_CA_FILE"], files["KAFKA_SSL_CERT_FILE"],
                         files["KAFKA_SSL_KEY_FILE"], check == "true")


def _check_tls_files(files: Mapping[str, Path | None]) -> None:
    """Load the certificates and key as a client will, so a wrong file fails now, named."""
    ca = files["KAFKA_SSL_CA_FILE"]
    if ca is not None:
        try:
            ssl.create_default_context(cafile=str(ca))
        except ssl.SSLError as exc:
            raise ConfigError(f"KAFKA_SSL_CA_FILE={str(ca)!r}: not a PEM file of "
                              f"certificates ({exc.reason})") from None
    cert, key = files["KAFKA_SSL_CERT_FILE"], files["KAFKA_SSL_KEY_FILE"]
    if cert is not None and key is not None:
        try:
            ssl.create_default_context().load_cert_chain(str(cert), str(key))
        except ssl.SSLError as exc:
            raise ConfigError(f"KAFKA_SSL_CERT_FILE={str(cert)!r}, KAFKA_SSL_KEY_FILE="
                              f"{str(key)!r}: not a matching PEM certificate and unencrypted "
                              f"key ({exc.reason})") from None


def _allowed_hosts(value: str, web_host: str) -> frozenset[str] | None:
    names = {name.strip().lower() for name in value.split(",") if name.strip()}
    if "*" in names:
        return None
    return frozenset(names | {"localhost", "127.0.0.1", "::1", web_host.lower()})


def _non_empty(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


def _bootstrap(value: str) -> str:
    servers = [s.strip() for s in value.split(",") if s.strip()]
    if not servers or not all(_HOST_PORT.match(s) for s in servers):
        raise ValueError("expected host:port[,host:port...]")
    return ",".join(servers)


def _number_in(
    convert: Callable[[str], N], low: N, high: N, kind: str
) -> Callable[[str], N]:
    expected = f"expected {kind} from {low} to {high}"

    def parse(value: str) -> N:
        try:
            number = convert(value)
        except ValueError:
            raise ValueError(expected) from None
        if not low <= number <= high:
            raise ValueError(expected)
        return number

    return parse


def _int_in(low: int, high: int) -> Callable[[str], int]:
    return _number_in(int, low, high, "a whole number")


def _float_in(low: float, high: float) -> Callable[[str], float]:
    return _number_in(float, low, high, "a number")


def _decimal_in(low: int, high: int | None) -> Callable[[str], Decimal]:
    bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"

    def parse(value: str) -> Decimal:
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"expected a decimal number {bounds}") from None
        if not number.is_finite() or number < low or (high is not None and number > high):
            raise ValueError(f"expected a decimal number {bounds}")
        return number

    return parse


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _duration(low: timedelta) -> Callable[[str], timedelta]:
    def parse(value: str) -> timedelta:
        match = _DURATION.match(value.lower())
        if not match:
            raise ValueError("expected a number and a unit: s, m, h or d (e.g. 30d)")
        duration = timedelta(**{_UNITS[match[2]]: float(match[1])})
        if duration < low:
            raise ValueError(f"expected at least {low.total_seconds():.0f} s")
        return duration

    return parse


def _choice(*options: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value.lower() not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return value.lower()

    return parse


def _currency(value: str) -> str:
    if not _CURRENCY.match(value):
        raise ValueError("expected a three-letter ISO 4217 code such as USD")
    return value


def _topic_prefix(value: str) -> str:
    if not _TOPIC_PREFIX.match(value):
        raise ValueError("only letters, digits, '.', '_' and '-' are allowed")
    return value


def _topic_prefix_non_empty(value: str) -> str:
    return _topic_prefix(_non_empty(value))


def _fx_rates(path: str, base: str) -> Mapping[str, Decimal]:
    """Rates to the base currency from a JSON file; the base itself is always 1."""
    rates: dict[str, Decimal] = {base: Decimal(1)}
    if not path:
        return rates
    try:
        document = orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read the file: {exc.strerror}") from None
    except orjson.JSONDecodeError:
        raise ValueError("the file is not valid JSON") from None
    if not isinstance(document, dict):
        raise ValueError('expected a JSON object such as {"EUR": 1.08}')
    for code, rate in document.items():
        if not _CURRENCY.match(code):
            raise ValueError(f"{code!r} is not a three-letter currency code")
        try:
            value = Decimal(str(rate))
        except InvalidOperation:
            raise ValueError(f"the rate of {code} is not a number") from None
        if isinstance(rate, bool) or not value.is_finite() or value <= 0:
            raise ValueError(f"the rate of {code} must be a positive number")
        rates[code] = value
    return rates


class _FollowUpOverrides(BaseModel):
    """The follow-up rules a user may override, in days, hours or counts."""

    model_config = ConfigDict(extra="forbid")

    check_in_after_days: PositiveFloat = 7
    reorder_min_interval_days: PositiveFloat = 7
    ticket_follow_up_after_days: PositiveFloat = 2
    overdue_urgent_hours: PositiveFloat = 24
    overdue_other_hours: PositiveFloat = 72
    warm_lead_clicks: PositiveInt = 2
    warm_lead_window_days: PositiveFloat = 14
    warm_lead_quiet_days: PositiveFloat = 30
    cross_sell_after_days: PositiveFloat = 14
    cross_sell_min_score: NonNegativeFloat = 0.25
    cooldown_days: NonNegativeFloat = 30
    cap: PositiveInt = 2
    cap_window_days: PositiveFloat = 7


def _follow_up_rules(value: str) -> FollowUpRules:
    try:
        o = _FollowUpOverrides.model_validate_json(value or "{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "value"
        raise ValueError(f"{where}: {first['msg']}") from None
    days, hours = (lambda n: timedelta(days=n)), (lambda n: timedelta(hours=n))
    return FollowUpRules(
        check_in_after=days(o.check_in_after_days),
        reorder_min_interval=days(o.reorder_min_interval_days),
        ticket_follow_up_after=days(o.ticket_follow_up_after_days),
        overdue_urgent=hours(o.overdue_urgent_hours),
        overdue_other=hours(o.overdue_other_hours),
        warm_lead_clicks=o.warm_lead_clicks,
        warm_lead_window=days(o.warm_lead_window_days),
        warm_lead_quiet=days(o.warm_lead_quiet_days),
        cross_sell_after=days(o.cross_sell_after_days),
        cross_sell_min_score=o.cross_sell_min_score,
        cooldown=days(o.cooldown_days),
        cap=o.cap,
        cap_window=days(o.cap_window_days),
    )
