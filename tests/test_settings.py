"""Configuration: defaults, and one clear message naming each bad value."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from streams.clients import async_options, sync_options
from streams.settings import VARIABLES, ConfigError, Settings
from streams.topics import topic_specs


def test_defaults() -> None:
    s = Settings.from_env({})
    assert (s.bootstrap_servers, s.web_port, s.partitions, s.clock, s.currency) == (
        "127.0.0.1:9092", 6066, 8, "wall", "USD")
    assert (s.default_margin, s.ticket_cost, s.topic_prefix) == (Decimal("0.30"), 0, "")
    assert s.fx_rates == {"USD": 1}
    assert s.topic("orders") == "orders"


@pytest.mark.parametrize(("name", "value"), [
    ("KAFKA_BOOTSTRAP_SERVERS", "localhost"),
    ("VALUESTREAM_WEB_PORT", "http"),
    ("VALUESTREAM_WEB_PORT", "70000"),
    ("VALUESTREAM_PARTITIONS", "0"),
    ("VALUESTREAM_CLOCK", "sundial"),
    ("VALUESTREAM_CURRENCY", "usd"),
    ("VALUESTREAM_DEFAULT_MARGIN", "1.5"),
    ("VALUESTREAM_DEFAULT_MARGIN", "NaN"),
    ("VALUESTREAM_TICKET_COST", "-1"),
    ("VALUESTREAM_TOPIC_PREFIX", "a b"),
    ("VALUESTREAM_BATCH_SIZE", "0"),
    ("VALUESTREAM_INPUT_IDLE_MS", "soon"),
    ("VALUESTREAM_DEDUP_DAYS", "7"),
    ("VALUESTREAM_FX_RATES", "/no/such/file.json"),
    ("VALUESTREAM_MAX_MESSAGE_BYTES", "700000"),  # its dead letter would not fit a record
    ("VALUESTREAM_MAX_STATE_BYTES", "1000000"),
    ("VALUESTREAM_MAX_PARKED", "0"),
    ("VALUESTREAM_ERASURE_BOUND", "30"),
    ("VALUESTREAM_ERASURE_BOUND", "5s"),
])
def test_a_bad_value_is_named_in_one_line(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({name: value})
    message = str(error.value)
    assert message.startswith(f"{name}={value!r}: ")
    assert "\n" not in message


@pytest.mark.parametrize(("content", "problem"), [
    ("{not json", "not valid JSON"),
    ('["EUR"]', "expected a JSON object"),
    ('{"EUR": 0}', "must be a positive number"),
    ('{"EUR": "x"}', "not a number"),
    ('{"euro": 1.1}', "not a three-letter currency code"),
])
def test_fx_rate_file_problems(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "rates.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=problem):
        Settings.from_env({"VALUESTREAM_FX_RATES": str(path)})


def test_fx_rates_are_exact_decimals(tmp_path: Path) -> None:
    path = tmp_path / "rates.json"
    path.write_text('{"EUR": 1.08, "GBP": "1.2634"}')
    rates = Settings.from_env({"VALUESTREAM_FX_RATES": str(path)}).fx_rates
    assert rates == {"USD": 1, "EUR": Decimal("1.08"), "GBP": Decimal("1.2634")}


def test_every_variable_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [v.name for v in VARIABLES if f"`{v.name}`" not in readme]
    assert missing == []


def test_the_consumer_group_and_changelog_live_under_the_prefix() -> None:
    s = Settings.from_env({"VALUESTREAM_TOPIC_PREFIX": "shop-a.", "VALUESTREAM_APP_ID": "vs"})
    assert s.group_id == "shop-a.vs"


@pytest.mark.parametrize(("env", "problem"), [
    ({"VALUESTREAM_API_TOKEN": "short"}, "at least 16 characters"),
    ({"VALUESTREAM_API_TOKEN": "x" * 16, "VALUESTREAM_API_TOKEN_FILE": "/t"}, "give one"),
    ({"VALUESTREAM_API_TOKEN_FILE": "/no/such/token"}, "cannot read the file"),
    ({"VALUESTREAM_MAX_PARKED_BYTES": "300000", "VALUESTREAM_MAX_STATE_BYTES": "524288"},
     "at most half"),
])
def test_access_and_limit_problems(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as error:
        Settings.from_env(env)
    assert "\n" not in str(error.value)


def test_the_erasure_bound_and_key() -> None:
    s = Settings.from_env({})
    assert s.erasure_bound == timedelta(days=30) and s.erasure_key is None
    assert s.marker_secret != Settings.from_env({"VALUESTREAM_APP_ID": "other"}).marker_secret
    s = Settings.from_env({"VALUESTREAM_ERASURE_BOUND": "36h",
                           "VALUESTREAM_ERASURE_KEY": "k" * 16})
    assert s.erasure_bound == timedelta(hours=36) and s.marker_secret == b"k" * 16
    assert "k" * 16 not in repr(s)
    with pytest.raises(ConfigError, match="VALUESTREAM_ERASURE_KEY: expected at least 16"):
        Settings.from_env({"VALUESTREAM_ERASURE_KEY": "short"})


@pytest.mark.parametrize(("env", "problem"), [
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL='TLS': expected one of"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI"},
     "KAFKA_SASL_MECHANISM='GSSAPI': expected one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_USERNAME: required"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "u"},
     "KAFKA_SASL_PASSWORD: required"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_FILE": "/no/such/ca.pem"},
     "KAFKA_SSL_CA_FILE='/no/such/ca.pem': no such file"),
    ({"KAFKA_SSL_CA_FILE": "/etc/hostname"}, "only used with KAFKA_SECURITY_PROTOCOL SSL"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERT_FILE": "/etc/hostname"},
     "give both or neither"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CHECK_HOSTNAME": "maybe"},
     "expected true or false"),
    ({"VALUESTREAM_REPLICATION_FACTOR": "0"}, "VALUESTREAM_REPLICATION_FACTOR='0'"),
])
def test_kafka_security_problems(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)) as error:
        Settings.from_env(env)
    assert "\n" not in str(error.value)


def test_a_ca_file_that_is_not_pem_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"KAFKA_SSL_CA_FILE=.*: not a PEM file"):
        Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_FILE": str(bad)})


def test_sasl_settings_and_the_client_options(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("pw\n")
    s = Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "sasl_plaintext",
                           "KAFKA_SASL_USERNAME": "shop", "KAFKA_SASL_PASSWORD_FILE": str(secret),
                           "VALUESTREAM_REPLICATION_FACTOR": "3"})
    assert "pw" not in repr(s)
    options = sync_options(s)
    assert (options["security_protocol"], options["sasl_mechanism"],
            options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "SASL_PLAINTEXT", "SCRAM-SHA-512", "shop", "pw")
    assert "ssl_cafile" not in options and "ssl_context" not in async_options(s)
    specs = {spec.name: spec.config for spec in topic_specs(s)}
    assert all(config["min.insync.replicas"] == "2" for config in specs.values())


def test_allowed_hosts_always_include_the_web_host_and_localhost() -> None:
    s = Settings.from_env({"VALUESTREAM_ALLOWED_HOSTS": "Shop.Example, api.example",
                           "VALUESTREAM_WEB_HOST": "10.0.0.5"})
    assert s.allowed_hosts == {"shop.example", "api.example", "10.0.0.5", "localhost",
                               "127.0.0.1", "::1"}
    assert Settings.from_env({"VALUESTREAM_ALLOWED_HOSTS": "*"}).allowed_hosts is None


def test_the_web_server_binds_one_address_and_advertises_another() -> None:
    from streams.app import create_app

    default = Settings.from_env({"VALUESTREAM_WEB_HOST": "10.0.0.5"})
    assert default.web_bind == "10.0.0.5"
    s = Settings.from_env({"VALUESTREAM_WEB_BIND": "0.0.0.0",
                           "VALUESTREAM_WEB_HOST": "worker-1.valuestream",
                           "VALUESTREAM_WEB_PORT": "7000"})
    app, agent = create_app(s)
    assert app.conf.web_bind == "0.0.0.0"
    assert str(app.conf.canonical_url) == "http://worker-1.valuestream:7000"
    assert agent.assignor.url == "http://worker-1.valuestream:7000"
