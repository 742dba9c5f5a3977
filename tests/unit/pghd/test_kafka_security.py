"""pghd.kafka_security: the Kafka clients' security settings, read from the environment once.

Plaintext by default, adding nothing to any client (today's behaviour exactly); SASL_SSL with
SCRAM as the compose and Kubernetes stacks set it, giving the same settings to aiokafka,
kafka-python and Faust; refusals of incomplete or contradictory settings; and a scan of the
code base that every Kafka client made in a service passes them on.
"""

from __future__ import annotations

import ast
import asyncio
import ssl
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from pghd import kafka_security
from pghd.kafka_security import ENV_NAMES, KafkaSecurity, KafkaSecurityError
from pghd.service.follower import CompactedFollower
from pghd.service.producer import KafkaGateway

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    """A PEM file ssl can load (the system's CA bundle, copied; no key material needed)."""
    paths = ssl.get_default_verify_paths()
    source = Path(paths.cafile or "/etc/ssl/certs/ca-certificates.crt")
    target = tmp_path / "ca.crt"
    target.write_bytes(source.read_bytes())
    return target


def sasl_ssl(ca_file: Path, **extra: str) -> dict[str, str]:
    return {
        "PGHD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "PGHD_KAFKA_USERNAME": "ingest",
        "PGHD_KAFKA_PASSWORD": "s3cret",
        "PGHD_KAFKA_CA_FILE": str(ca_file),
        **extra,
    }


def test_plaintext_by_default_adds_nothing_to_any_client() -> None:
    security = KafkaSecurity.from_env({})
    assert security == KafkaSecurity() and security.plaintext
    assert security.aiokafka() == {}
    assert security.kafka_python() == {}
    assert security.faust() == {}
    assert security.ssl_context() is None
    assert KafkaSecurity.from_env({"PGHD_KAFKA_SECURITY_PROTOCOL": "plaintext"}).plaintext


def test_sasl_ssl_gives_every_library_the_same_user_mechanism_and_verified_tls(
    ca_file: Path,
) -> None:
    security = KafkaSecurity.from_env(sasl_ssl(ca_file))
    assert (security.protocol, security.mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert security.sasl and security.tls

    aio = security.aiokafka()
    context = aio.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert aio == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "ingest",
        "sasl_plain_password": "s3cret",
    }
    assert security.kafka_python() == {
        "security_protocol": "SASL_SSL",
        "ssl_cafile": str(ca_file),
        "ssl_check_hostname": True,
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "ingest",
        "sasl_plain_password": "s3cret",
    }
    credentials = security.faust()["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    # What Faust's aiokafka driver hands its consumer and producer.
    faust_auth = dict(credentials_to_aiokafka_auth(credentials))
    assert isinstance(faust_auth.pop("ssl_context"), ssl.SSLContext)
    assert faust_auth == aio


def test_ssl_without_sasl_and_sasl_without_tls(ca_file: Path) -> None:
    tls_only = KafkaSecurity.from_env(
        {"PGHD_KAFKA_SECURITY_PROTOCOL": "SSL", "PGHD_KAFKA_CA_FILE": str(ca_file)}
    )
    assert set(tls_only.aiokafka()) == {"security_protocol", "ssl_context"}
    assert isinstance(tls_only.faust()["broker_credentials"], faust.SSLCredentials)
    clear = KafkaSecurity.from_env(
        {
            "PGHD_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "PGHD_KAFKA_SASL_MECHANISM": "scram-sha-256",
            "PGHD_KAFKA_USERNAME": "alerts",
            "PGHD_KAFKA_PASSWORD": "pw",
        }
    )
    assert clear.aiokafka() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "alerts",
        "sasl_plain_password": "pw",
    }
    assert faust_credentials_protocol(clear) == "SASL_PLAINTEXT"


def faust_credentials_protocol(security: KafkaSecurity) -> str:
    return str(security.faust()["broker_credentials"].protocol.value)


def test_the_password_may_come_from_a_file(ca_file: Path, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    env = sasl_ssl(ca_file, PGHD_KAFKA_PASSWORD="", PGHD_KAFKA_PASSWORD_FILE=str(secret))
    assert KafkaSecurity.from_env(env).password == "from-a-file"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"PGHD_KAFKA_SECURITY_PROTOCOL": "TLS"}, "expected one of"),
        ({"PGHD_KAFKA_SASL_MECHANISM": "GSSAPI"}, "PGHD_KAFKA_SASL_MECHANISM"),
        ({"PGHD_KAFKA_USERNAME": ""}, "needs PGHD_KAFKA_USERNAME"),
        ({"PGHD_KAFKA_PASSWORD": ""}, "needs PGHD_KAFKA_PASSWORD"),
        ({"PGHD_KAFKA_PASSWORD_FILE": "/nonexistent"}, "not both"),
        ({"PGHD_KAFKA_CA_FILE": "/nonexistent/ca.crt"}, "no such file"),
        ({"PGHD_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}, "does not authenticate"),
        ({"PGHD_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "does not use TLS"),
    ],
)
def test_incomplete_or_contradictory_settings_are_refused(
    ca_file: Path, changes: dict[str, str], message: str
) -> None:
    with pytest.raises(KafkaSecurityError, match=message):
        KafkaSecurity.from_env(sasl_ssl(ca_file, **changes))


def test_an_unreadable_password_file_is_refused(ca_file: Path) -> None:
    env = sasl_ssl(ca_file, PGHD_KAFKA_PASSWORD="", PGHD_KAFKA_PASSWORD_FILE="/nonexistent")
    with pytest.raises(KafkaSecurityError, match="cannot read"):
        KafkaSecurity.from_env(env)


def test_the_password_never_shows(ca_file: Path) -> None:
    security = KafkaSecurity.from_env(sasl_ssl(ca_file))
    assert "s3cret" not in repr(security)
    assert "s3cret" not in security.describe()
    assert security.describe() == f"SASL_SSL (SCRAM-SHA-512, user ingest), CA {ca_file}"
    assert "s3cret" not in repr(security.faust()["broker_credentials"])


def test_the_environment_is_read_once(ca_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kafka_security.current.cache_clear()
    try:
        for name, value in sasl_ssl(ca_file).items():
            monkeypatch.setenv(name, value)
        assert kafka_security.current().username == "ingest"
        monkeypatch.setenv("PGHD_KAFKA_USERNAME", "processors")
        assert kafka_security.current().username == "ingest"
        assert kafka_security.aiokafka_kwargs()["sasl_plain_username"] == "ingest"
        assert kafka_security.kafka_python_kwargs()["sasl_plain_username"] == "ingest"
        assert kafka_security.faust_options()["broker_credentials"].username == "ingest"
    finally:
        kafka_security.current.cache_clear()


def test_the_env_names_are_the_documented_ones() -> None:
    assert {
        "PGHD_KAFKA_SECURITY_PROTOCOL",
        "PGHD_KAFKA_SASL_MECHANISM",
        "PGHD_KAFKA_USERNAME",
        "PGHD_KAFKA_PASSWORD",
        "PGHD_KAFKA_PASSWORD_FILE",
        "PGHD_KAFKA_CA_FILE",
    } == ENV_NAMES
    docs = (ROOT / "docs" / "security.md").read_text()
    for name in ENV_NAMES:
        assert name in docs, f"{name} is not in docs/security.md"


def test_the_gateway_and_the_follower_build_their_clients_with_it(ca_file: Path) -> None:
    security = KafkaSecurity.from_env(sasl_ssl(ca_file))

    async def clients() -> tuple[Any, Any]:
        gateway = KafkaGateway(bootstrap="127.0.0.1:1", topic="t", client_id="c", security=security)
        follower = CompactedFollower(
            bootstrap="127.0.0.1:1",
            topics=["t"],
            model=type("M", (), {"ready": False})(),
            apply=lambda tp, record: None,
            client_id="c",
            security=security,
        )
        return gateway._factory(), follower._factory()

    producer, consumer = asyncio.run(clients())
    for client in (producer.client, consumer._client):
        assert client._security_protocol == "SASL_SSL"
        assert client._sasl_mechanism == "SCRAM-SHA-512"
        assert client._sasl_plain_username == "ingest"
        assert isinstance(client._ssl_context, ssl.SSLContext)


def test_a_faust_worker_app_takes_the_broker_credentials(
    ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pghd.faust_app import new_app
    from processors.settings import ProcessorSettings

    kafka_security.current.cache_clear()
    try:
        for name, value in sasl_ssl(ca_file, PGHD_KAFKA_USERNAME="processors").items():
            monkeypatch.setenv(name, value)
        settings = ProcessorSettings(influx_token="x")  # type: ignore[arg-type]
        app = new_app(settings)
        credentials = app.conf.broker_credentials
        assert isinstance(credentials, faust.SASLCredentials)
        assert credentials.username == "processors"
        assert credentials.protocol.value == "SASL_SSL"
    finally:
        kafka_security.current.cache_clear()


#: Kafka client classes, and where one may be made without the security settings.
CLIENTS = {
    "AIOKafkaProducer",
    "AIOKafkaConsumer",
    "AIOKafkaClient",
    "KafkaConsumer",
    "KafkaProducer",
    "KafkaAdminClient",
}
PLAINTEXT_ONLY = {
    # The test harness: commits offsets of throw-away groups on the tests' own plaintext
    # broker (the SASL_SSL test runs without it: from_now=False).
    "deploy/local/harness.py",
}


def _client_calls(path: Path) -> list[tuple[int, str, bool]]:
    """(line, class, passes ``**`` settings) of each Kafka client made in ``path``."""
    calls = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if name in CLIENTS:
            spread = any(keyword.arg is None for keyword in node.keywords)
            calls.append((node.lineno, name, spread))
    return calls


def test_every_kafka_client_of_the_services_is_made_with_the_security_settings() -> None:
    missing = []
    seen = 0
    for package in ("pghd", "ingest", "processors", "alerts", "deploy"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            for line, name, spread in _client_calls(path):
                seen += 1
                if not spread and relative not in PLAINTEXT_ONLY:
                    missing.append(f"{relative}:{line} {name}")
    assert seen >= 15, "the scan found too few clients: did the code move?"
    assert not missing, "Kafka clients made without pghd.kafka_security:\n" + "\n".join(missing)
