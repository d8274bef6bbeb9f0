"""Kafka clients' connection options, from the settings: the brokers and how to authenticate
to them and check them. Every component that talks to Kafka takes its options from here:
``sync_options`` for kafka-python (``topics``, ``publish``, ``fit``, ``watch``, tests),
``async_options`` for aiokafka (the worker, the benchmark)."""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import faust
from kafka.errors import KafkaError

from streams.settings import Settings

# How long a command waits for a first answer from the brokers before it says why not.
CONNECT_TIMEOUT_MS = 30_000
T = TypeVar("T")


class KafkaUnavailable(RuntimeError):
    """No connection to Kafka; the message says why in one line."""


def _common(settings: Settings) -> dict[str, Any]:
    """What both client libraries name alike: the brokers, the protocol, SASL."""
    security = settings.kafka_security
    options: dict[str, Any] = {"bootstrap_servers": settings.bootstrap_servers.split(","),
                               "security_protocol": security.protocol}
    if security.sasl_mechanism is not None:
        options.update(sasl_mechanism=security.sasl_mechanism,
                       sasl_plain_username=security.username,
                       sasl_plain_password=security.password)
    return options


def sync_options(settings: Settings) -> dict[str, Any]:
    security = settings.kafka_security
    options = {**_common(settings), "bootstrap_timeout_ms": CONNECT_TIMEOUT_MS}
    if security.tls:
        options.update(ssl_cafile=_path(security.ca_file), ssl_certfile=_path(security.cert_file),
                       ssl_keyfile=_path(security.key_file),
                       ssl_check_hostname=security.check_hostname)
    return options


def async_options(settings: Settings) -> dict[str, Any]:
    options = _common(settings)
    if settings.kafka_security.tls:
        options["ssl_context"] = tls_context(settings)
    return options


def faust_credentials(settings: Settings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """The same for Faust's own clients (not started by a worker; given for completeness)."""
    security = settings.kafka_security
    context = tls_context(settings) if security.tls else None
    if security.sasl_mechanism is not None:
        return faust.SASLCredentials(username=security.username, password=security.password,
                                     ssl_context=context, mechanism=security.sasl_mechanism)
    return faust.SSLCredentials(context) if context is not None else None


def tls_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context of a client: the configured CA (else the system's), the client
    certificate if any, the host name checked unless turned off."""
    security = settings.kafka_security
    context = ssl.create_default_context(cafile=_path(security.ca_file))
    if security.cert_file is not None and security.key_file is not None:
        context.load_cert_chain(security.cert_file, security.key_file)
    context.check_hostname = security.check_hostname
    return context


def _path(path: Any) -> str | None:
    return str(path) if path is not None else None


# What a client logs when a connection can never succeed with these settings.
_FATAL = ("SaslAuthenticationFailed", "Authentication failed", "UnsupportedSaslMechanism",
          "CERTIFICATE_VERIFY_FAILED")


class _Recorder(logging.Handler):
    """The kafka client's log messages while a connection is attempted: the reason a
    connection failed is only logged (the exception raised says "unable to bootstrap")."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.fatal = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.messages.append(message)
        if any(marker in message for marker in _FATAL):
            self.fatal.set()


def connect(settings: Settings, create: Callable[[], T]) -> T:
    """Create a kafka-python client (``create`` connects to the brokers); a failure to
    connect becomes :class:`KafkaUnavailable` naming the cause: at once for wrong credentials
    or an untrusted certificate (the client would retry until its timeout), after
    ``CONNECT_TIMEOUT_MS`` when nothing answers."""
    recorder = _Recorder()
    logger = logging.getLogger("kafka")
    logger.addHandler(recorder)
    propagate, logger.propagate = logger.propagate, False
    outcome: list[T | BaseException] = []
    done = threading.Event()

    def attempt() -> None:
        try:
            outcome.append(create())
        except BaseException as exc:  # handed to the caller's thread
            outcome.append(exc)
        finally:
            done.set()

    try:
        threading.Thread(target=attempt, name="kafka-connect", daemon=True).start()
        while not done.wait(0.05):
            if recorder.fatal.is_set():  # the attempt goes on in the background, in vain
                raise KafkaUnavailable(_why(settings, recorder.messages, None))
        result = outcome[0]
        if isinstance(result, KafkaError):
            raise KafkaUnavailable(_why(settings, recorder.messages, result))
        if isinstance(result, BaseException):
            raise result
        return result
    finally:
        logger.removeHandler(recorder)
        logger.propagate = propagate


def _why(settings: Settings, messages: list[str], exc: KafkaError | None) -> str:
    security = settings.kafka_security
    where = f"cannot connect to Kafka at {settings.bootstrap_servers}"
    logged = " ".join(messages)
    if "SaslAuthenticationFailed" in logged or "Authentication failed" in logged:
        return (f"{where}: authentication failed for user {security.username!r} with "
                f"{security.sasl_mechanism} (KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD)")
    if "UnsupportedSaslMechanism" in logged:
        return (f"{where}: the brokers do not offer KAFKA_SASL_MECHANISM="
                f"{security.sasl_mechanism}")
    if "CERTIFICATE_VERIFY_FAILED" in logged:
        detail = "certificate verify failed"
        if "Hostname mismatch" in logged or "IP address mismatch" in logged:
            detail = "the broker's certificate does not name that host (KAFKA_SSL_CHECK_HOSTNAME)"
        elif security.ca_file is not None:
            detail = ("the broker's certificate is not signed by KAFKA_SSL_CA_FILE="
                      f"{security.ca_file}")
        return f"{where}: {detail}"
    if "SSL" in logged and not security.tls:
        return f"{where}: the brokers speak TLS; set KAFKA_SECURITY_PROTOCOL to SSL or SASL_SSL"
    return (f"{where} within {CONNECT_TIMEOUT_MS // 1000} s ({type(exc).__name__}; check the "
            f"address and KAFKA_SECURITY_PROTOCOL={security.protocol})")
