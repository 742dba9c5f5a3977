"""Kafka with SASL/SCRAM over TLS and ACLs, on a real broker, as Compose and Kubernetes run it.

The broker is the one of ``docker-compose.yml``: ``deploy/kafka/server.properties`` as it is
(SASL_SSL listener with SCRAM-SHA-512, mutual TLS on the controller listener, the
``StandardAuthorizer`` with nothing allowed by default), only hosts, ports and paths made
local; its certificates made here by ``deploy/kafka/make-certs.sh`` (keytool), the broker and
admin SCRAM users formatted into its storage. The services' users and ACLs come from
``deploy/kafka-acls.json`` through ``pghd kafka apply``'s code (:func:`apply_acls`).

Shown: a plaintext client, a wrong password and a client that does not trust the CA are all
refused; only ``ingest`` may write ``pghd.measurements.v1`` (the others get
``TopicAuthorizationFailedError``); the producer gateway and the compacted-topic follower
work over SASL_SSL; ingest, processors (with the store stage) and alerts run end to end, a
reading to a page and an erasure through every stage, each as its own Kafka user with only
the spec's rights; so does the care-team API; re-applying the spec changes nothing, and an
ACL added by hand is pruned.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from kafka.admin import ACL, ACLOperation, ACLPermissionType, ResourcePattern, ResourceType

from deploy.local.acls import DEFAULT_ACL_SPEC, apply_acls
from deploy.local.ephemeral import kafka_on_free_ports
from deploy.local.harness import (
    new_patient,
    reading,
    running_care_api,
    running_pipeline,
    wait_for,
)
from deploy.local.influxdb import InfluxServer
from deploy.local.kafka import BrokerSecurity, KafkaServer, kafka_healthy
from deploy.local.process import log_tail
from deploy.local.topics import DEFAULT_SPEC, admin_client, apply_topics
from pghd import topics
from pghd.access import hash_token
from pghd.kafka_acls import load_acl_spec
from pghd.kafka_security import KafkaSecurity
from pghd.service.follower import CompactedFollower
from pghd.service.producer import KafkaGateway, KafkaUnavailable
from pghd.topics import load_spec

SPEC = load_acl_spec(DEFAULT_ACL_SPEC)
CARE_TOKEN = "sasl-care-token"


@dataclass
class Secured:
    """The SASL_SSL broker, its TLS material and the services' passwords."""

    server: KafkaServer
    security: BrokerSecurity
    passwords: dict[str, str]

    @property
    def bootstrap(self) -> str:
        return self.server.bootstrap

    def user(self, name: str) -> KafkaSecurity:
        return self.security.client(name, self.passwords[name])

    def env(self, name: str, workdir: Path | None = None) -> dict[str, str]:
        """A service's security variables (with ``workdir``: the password in a file)."""
        env = {
            "PGHD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "PGHD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "PGHD_KAFKA_USERNAME": name,
            "PGHD_KAFKA_CA_FILE": str(self.security.ca_file),
        }
        if workdir is None:
            env["PGHD_KAFKA_PASSWORD"] = self.passwords[name]
        else:
            secret = workdir / f"{name}.kafka-password"
            secret.write_text(self.passwords[name] + "\n")
            secret.chmod(0o600)
            env["PGHD_KAFKA_PASSWORD_FILE"] = str(secret)
        return env


@pytest.fixture(scope="module")
def secured(
    _installs: dict[str, Future[Path]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Secured]:
    libs = _installs["kafka"].result()
    base = tmp_path_factory.mktemp("kafka-sasl")
    security = BrokerSecurity.generate(base / "certs")
    server = kafka_on_free_ports(libs, base, security=security)
    try:
        server.start()
        admin = server.client_security
        apply_topics(load_spec(DEFAULT_SPEC), bootstrap=server.bootstrap, security=admin)
        passwords = {user: secrets.token_hex(16) for user in SPEC.users}
        apply_acls(SPEC, bootstrap=server.bootstrap, passwords=passwords, security=admin)
        yield Secured(server=server, security=security, passwords=passwords)
    finally:
        server.stop()


async def _produce(bootstrap: str, security: KafkaSecurity, topic: str) -> None:
    """Start an idempotent ``acks=all`` producer as ``security`` says and write one record."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=10_000,
        **security.aiokafka(),
    )
    await asyncio.wait_for(producer.start(), 30)
    try:
        await asyncio.wait_for(producer.send_and_wait(topic, b"{}", key=b"p-acl"), 30)
    finally:
        await producer.stop()


def test_plaintext_unauthenticated_and_unverified_clients_are_refused(secured: Secured) -> None:
    bootstrap = secured.bootstrap
    assert kafka_healthy(bootstrap, security=secured.server.client_security)
    assert not kafka_healthy(bootstrap)  # plaintext, no user
    wrong = secured.security.client("ingest", "not-the-password")
    assert not kafka_healthy(bootstrap, security=wrong)
    # The right password, but the system's CAs: the broker's certificate is not trusted.
    system_cas = KafkaSecurity(
        protocol="SASL_SSL", username="ingest", password=secured.passwords["ingest"]
    )
    assert not kafka_healthy(bootstrap, security=system_cas)
    for refused in (KafkaSecurity(), wrong, system_cas):
        with pytest.raises(KafkaError):
            asyncio.run(_produce(bootstrap, refused, topics.DLQ))


def test_only_ingest_may_write_the_measurements(secured: Secured) -> None:
    asyncio.run(_produce(secured.bootstrap, secured.user("ingest"), topics.MEASUREMENTS))
    for user in sorted(set(SPEC.users) - {"ingest"}):
        with pytest.raises(TopicAuthorizationFailedError):
            asyncio.run(_produce(secured.bootstrap, secured.user(user), topics.MEASUREMENTS))
    # The processors' user is not refused everything: it writes the points.
    asyncio.run(_produce(secured.bootstrap, secured.user("processors"), topics.POINTS))


def test_a_user_reads_only_the_topics_the_spec_gives_it(secured: Secured) -> None:
    async def read(user: str, topic: str) -> None:
        """Read ``topic`` in a group ``user`` may use (its app id's prefix)."""
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=secured.bootstrap,
            group_id=f"pghd-{user}-acl-test",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **secured.user(user).aiokafka(),
        )
        await asyncio.wait_for(consumer.start(), 30)
        try:
            await asyncio.wait_for(consumer.getmany(timeout_ms=2000), 30)
        finally:
            await consumer.stop()

    asyncio.run(read("processors", topics.MEASUREMENTS))
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(read("alerts", topics.MEASUREMENTS))


def test_the_gateway_and_the_follower_work_over_sasl_ssl(secured: Secured) -> None:
    class Model:
        ready = False

    async def scenario() -> tuple[list[bytes], Exception]:
        seen: list[bytes] = []
        model = Model()
        follower = CompactedFollower(
            bootstrap=secured.bootstrap,
            topics=[topics.ENROLLMENTS],
            model=model,
            apply=lambda tp, record: seen.append(record.key),
            client_id="test-care-api",
            security=secured.user("care-api"),
        )
        writer = KafkaGateway(
            bootstrap=secured.bootstrap,
            topic=topics.ENROLLMENTS,
            client_id="test-ingest",
            security=secured.user("ingest"),
        )
        intruder = KafkaGateway(
            bootstrap=secured.bootstrap,
            topic=topics.MEASUREMENTS,
            client_id="test-processors",
            security=secured.user("processors"),
        )
        for service in (follower, writer, intruder):
            await service.start()
        try:
            for gateway in (writer, intruder):
                for _ in range(300):
                    if gateway.connected:
                        break
                    await asyncio.sleep(0.1)
                assert gateway.connected
            await writer.send_batch([(b"p-sasl", None)])  # a tombstone: harmless to ingest
            refusal: Exception = AssertionError("the processors wrote the measurements")
            try:
                await intruder.send_batch([(b"p-sasl", b"{}")])
            except KafkaUnavailable as exc:
                refusal = exc
            for _ in range(300):
                if model.ready and b"p-sasl" in seen:
                    break
                await asyncio.sleep(0.1)
            return seen, refusal
        finally:
            for service in (intruder, writer, follower):
                await service.stop()

    seen, refusal = asyncio.run(scenario())
    assert b"p-sasl" in seen
    assert isinstance(refusal, KafkaUnavailable), refusal
    assert "TopicAuthorizationFailedError" in str(refusal)


def test_the_services_run_end_to_end_each_as_its_own_user(
    secured: Secured, influx: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    workdir = tmp_path_factory.mktemp("sasl-pipeline")
    stack_env = {"PGHD_KAFKA_BOOTSTRAP": secured.bootstrap, **influx.env()}
    env_of = {
        "ingest": secured.env("ingest"),
        "processors": secured.env("processors", workdir),  # the password in a file
        "alerts": secured.env("alerts"),
    }
    # The probe reading of running_pipeline goes ingest -> Kafka -> processors -> store stage
    # -> InfluxDB: each service as its own user, with the spec's rights only.
    with running_pipeline(
        stack_env=stack_env, influx=influx, workdir=workdir, env_of=env_of, from_now=False
    ) as pipeline:
        patient = new_patient("sasl")
        when = datetime.now(UTC) - timedelta(minutes=5)
        low = reading(patient, 2.2, when, metric="blood_glucose", unit="mmol/L")
        response = pipeline.post(low)
        assert response.status_code == 202, response.text
        message = wait_for(
            lambda: pipeline.sink.messages_about("critical") or None,
            timeout=90,
            what="a page for the hypoglycaemia, through the alerts worker",
            diagnostics=pipeline.diagnostics,
        )
        assert message
        # An erasure crosses every service's rights: ingest tombstones and writes the marker,
        # the processors forward it (points, anomalies, commands, care plan) and report, the
        # store stage and the alerts worker report, ingest reads the reports back.
        erased = pipeline.admin("POST", f"/v1/patients/{patient}/erase?wait=90")
        assert erased.status_code == 200, erased.text
        report = erased.json()
        assert report["pending"] == [] and report["failed"] == {}, report
        assert report["removed"]["processors"]["state_records"] == 1, report
        for name in ("ingest", "processors", "alerts"):
            log = pipeline.logs[name].read_text()
            assert "AuthorizationFailed" not in log, f"{name}:\n{log[-3000:]}"
            assert "SaslAuthenticationFailed" not in log, f"{name}:\n{log[-3000:]}"
    # Faust's changelog topics were made by the processors' and alerts' own users.
    with admin_client(secured.bootstrap, security=secured.server.client_security) as admin:
        names = set(admin.list_topics())
    app_ids = {pipeline.env["PGHD_PROCESSORS_APP_ID"], pipeline.env["PGHD_ALERTS_APP_ID"]}
    for app_id in app_ids:
        assert any(n.startswith(app_id) and n.endswith("-changelog") for n in names), names


def test_the_care_team_api_runs_as_its_own_user(
    secured: Secured, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Its follower reads alerts, commands, care plans and enrollments; every request writes
    an audit event; GET /v1/audit reads the audit topic."""
    workdir = tmp_path_factory.mktemp("sasl-care-api")
    log = workdir / "care-api.log"
    env = {
        **secured.env("care-api"),
        "PGHD_CARE_API_TOKENS": json.dumps({"auditor": hash_token(CARE_TOKEN)}),
    }
    headers = {"Authorization": f"Bearer {CARE_TOKEN}"}
    with running_care_api(
        kafka_bootstrap=secured.bootstrap, log=log, env=env, timeout=90
    ) as url:  # /readyz: the follower read its four topics over SASL_SSL
        assert httpx.get(f"{url}/v1/alerts", headers=headers, timeout=10).status_code == 200
        audit = httpx.get(f"{url}/v1/audit", headers=headers, timeout=30)
        assert audit.status_code == 200, audit.text
        assert any(e["operation"] == "GET /v1/alerts" for e in audit.json()), audit.json()
    assert "AuthorizationFailed" not in log.read_text(), log_tail(log)


def test_applying_again_changes_nothing_and_prunes_what_the_spec_does_not_list(
    secured: Secured,
) -> None:
    admin = secured.server.client_security
    again = apply_acls(SPEC, bootstrap=secured.bootstrap, passwords={}, security=admin)
    assert all(r.created == 0 and r.deleted == 0 for r in again), again
    assert {r.credential for r in again} == {"kept (no password given)"}
    stray = ACL(
        principal="User:care-api",
        host="*",
        operation=ACLOperation.WRITE,
        permission_type=ACLPermissionType.ALLOW,
        resource_pattern=ResourcePattern(ResourceType.TOPIC, topics.MEASUREMENTS),
    )
    with admin_client(secured.bootstrap, security=admin) as client:
        assert not client.create_acls([stray])["failed"]
    pruned = {
        r.user: r
        for r in apply_acls(SPEC, bootstrap=secured.bootstrap, passwords={}, security=admin)
    }
    assert pruned["care-api"].deleted == 1
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(_produce(secured.bootstrap, secured.user("care-api"), topics.MEASUREMENTS))
