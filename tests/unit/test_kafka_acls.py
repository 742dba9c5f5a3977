"""deploy/kafka-acls.json: who may read and write which topic, as the code uses them.

The table below is the ACL table of docs/security.md ("Kafka"), derived from each service's
clients (pghd/topics.py names; ingest's gateways and followers, the processors' agent,
outbox and store stage, the alerts worker and digest sender, the care-team API's producer,
follower and audit reader). :meth:`AclSpec.allows` answers as the broker's StandardAuthorizer
would, so these are the rights the services get; the real broker's answers are in
tests/integration/test_kafka_security.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from alerts.settings import AlertsSettings
from deploy.local.acls import DEFAULT_ACL_SPEC, passwords_from_env
from deploy.local.kafka import BROKER_CONFIG, read_properties
from pghd import topics
from pghd.cli import app
from pghd.kafka_acls import AclSpec, load_acl_spec, parse_acl_spec, password_env
from pghd.topics import load_spec
from processors.settings import ProcessorSettings

ROOT = Path(__file__).resolve().parents[2]
SPEC = load_acl_spec(DEFAULT_ACL_SPEC)

#: topic -> (writers, readers), from the code.
TABLE: dict[str, tuple[set[str], set[str]]] = {
    topics.MEASUREMENTS: ({"ingest"}, {"processors"}),
    # alerts: when each patient's sources last sent, for their feedback (device_silent)
    topics.POINTS: ({"processors"}, {"processors", "alerts"}),
    topics.ANOMALIES: ({"processors"}, {"processors", "alerts"}),
    topics.ALERTS: ({"alerts"}, {"alerts", "care-api"}),
    # processors: the erasure marker, behind the patient's earlier commands
    topics.ALERT_COMMANDS: ({"care-api", "processors"}, {"alerts", "care-api"}),
    topics.DIGESTS: ({"alerts"}, {"alerts"}),
    # ingest and processors: the tombstone of an erasure (processors: again, after the
    # patient's earlier plans)
    topics.CARE_PLANS: ({"care-api", "ingest", "processors"}, {"processors", "care-api"}),
    topics.ENROLLMENTS: ({"ingest"}, {"ingest", "care-api"}),
    # alerts: the readings ingest refused, for the patients' feedback (reading_refused)
    topics.DLQ: ({"ingest", "processors", "alerts"}, {"alerts"}),
    # the signing secrets travel here: only the writer (care-api) and the signer (alerts,
    # which also tombstones a subscription at an erasure) read it
    topics.FEEDBACK_SUBSCRIPTIONS: ({"care-api", "alerts"}, {"care-api", "alerts"}),
    topics.AUDIT: ({"ingest", "processors", "alerts", "care-api"}, {"ingest", "care-api"}),
}


def test_the_spec_names_the_four_services_and_the_brokers_super_users() -> None:
    assert SPEC.users == ["ingest", "processors", "alerts", "care-api"]
    assert SPEC.mechanism == "SCRAM-SHA-512"
    broker = read_properties(BROKER_CONFIG)
    super_users = broker["super.users"].split(";")
    assert [f"User:{u}" for u in SPEC.super_users] == super_users[: len(SPEC.super_users)]
    # The rest: the broker's own certificate on the controller listener.
    assert super_users[len(SPEC.super_users) :] == ["User:CN=kafka-broker"]
    assert broker["sasl.enabled.mechanisms"] == SPEC.mechanism


@pytest.mark.parametrize("topic", sorted(TABLE))
def test_who_writes_and_reads_each_topic(topic: str) -> None:
    writers, readers = TABLE[topic]
    assert SPEC.who_may("WRITE", "topic", topic) == writers
    assert SPEC.who_may("READ", "topic", topic) == readers
    # Reading or writing implies describing; nobody else sees the topic at all.
    assert SPEC.who_may("DESCRIBE", "topic", topic) == writers | readers


def test_only_ingest_writes_the_measurements() -> None:
    assert SPEC.who_may("WRITE", "topic", topics.MEASUREMENTS) == {"ingest"}
    assert SPEC.allows("admin", "WRITE", "topic", topics.MEASUREMENTS)  # a super user


def test_the_table_covers_every_topic_of_the_spec_and_nothing_else() -> None:
    named = {t.name for t in load_spec(ROOT / "deploy" / "topics.json")}
    assert set(TABLE) == named
    literal = {r.name for r in SPEC.rules if r.resource == "topic" and r.pattern == "literal"}
    assert literal <= named


def test_no_service_may_create_alter_or_delete_the_platforms_topics_or_the_cluster() -> None:
    for topic in TABLE:
        for operation in ("CREATE", "DELETE", "ALTER", "ALTER_CONFIGS"):
            assert SPEC.who_may(operation, "topic", topic) == set(), (topic, operation)
    assert not any(rule.resource == "cluster" for rule in SPEC.rules)


@pytest.mark.parametrize(
    ("user", "app_id", "groups"),
    [
        (
            "processors",
            ProcessorSettings.model_fields["app_id"].default,
            ["", "-store"],
        ),
        ("alerts", AlertsSettings.model_fields["app_id"].default, [""]),
    ],
)
def test_each_faust_worker_owns_its_app_ids_topics_and_groups(
    user: str, app_id: str, groups: list[str]
) -> None:
    for changelog in (f"{app_id}-state-changelog", f"{app_id}-__assignor-__leader"):
        for operation in ("CREATE", "READ", "WRITE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS"):
            assert SPEC.who_may(operation, "topic", changelog) == {user}, (changelog, operation)
    for suffix in groups:
        assert SPEC.who_may("READ", "group", app_id + suffix) == {user}
        assert SPEC.who_may("DESCRIBE", "group", app_id + suffix) == {user}  # the lag probe


def test_the_http_services_use_no_consumer_group() -> None:
    for user in ("ingest", "care-api"):
        assert not any(rule.resource == "group" for rule in SPEC.rules_of(user)), user


def _spec(**principal: Any) -> dict[str, Any]:
    return {"schema_version": 1, "super_users": ["admin"], "principals": {"svc": principal}}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"schema_version": 2}, "schema_version"),
        (_spec(topics={"t": ["SCRIBBLE"]}), "unknown operations"),
        (_spec(topics={"t": []}), "non-empty list"),
        (_spec(topics={"t": ["READ", "read"]}), "twice"),
        (_spec(tpoics={"t": ["READ"]}), "unknown keys"),
        (_spec(), "no rights"),
        (
            {"schema_version": 1, "super_users": ["admin"], "principals": {"admin": {}}},
            "super user",
        ),
        ({"schema_version": 1, "principals": {"no spaces": {"topics": {"t": ["READ"]}}}}, "name"),
    ],
)
def test_a_broken_spec_is_refused(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_acl_spec(document)


def test_prefixes_and_implied_operations_match_as_kafka_does() -> None:
    spec: AclSpec = parse_acl_spec(
        _spec(topic_prefixes={"app-": ["ALTER_CONFIGS"]}, groups={"g": ["READ"]})
    )
    assert spec.allows("svc", "DESCRIBE_CONFIGS", "topic", "app-x")
    assert not spec.allows("svc", "DESCRIBE", "topic", "app-x")
    assert not spec.allows("svc", "ALTER_CONFIGS", "topic", "ap")
    assert spec.allows("svc", "DESCRIBE", "group", "g")
    assert not spec.allows("svc", "READ", "group", "g2")  # literal: the name alone


def test_passwords_are_read_from_one_variable_per_user() -> None:
    assert password_env("care-api") == "PGHD_KAFKA_CARE_API_PASSWORD"
    env = {"PGHD_KAFKA_INGEST_PASSWORD": "a", "PGHD_KAFKA_ALERTS_PASSWORD": " ", "OTHER": "x"}
    assert passwords_from_env(SPEC, env) == {"ingest": "a"}


def test_the_cli_prints_the_rules() -> None:
    result = CliRunner().invoke(app, ["kafka", "acls"])
    assert result.exit_code == 0, result.output
    # columns as wide as their longest entry
    assert re.search(
        r"^ingest +topic +literal +pghd\.measurements\.v1 +WRITE$", result.output, re.M
    )
    assert "super users (broker super.users): broker, admin" in result.output
    help_text = CliRunner().invoke(app, ["kafka", "apply", "--help"]).output
    for option in ("--bootstrap", "--spec", "--no-users", "--require-passwords", "--no-prune"):
        assert option in help_text, option


def test_apply_without_every_password_stops_when_asked_to_require_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for user in SPEC.users:
        monkeypatch.delenv(password_env(user), raising=False)
    result = CliRunner().invoke(
        app, ["kafka", "apply", "--bootstrap", "127.0.0.1:1", "--require-passwords"]
    )
    assert result.exit_code == 2
    assert "PGHD_KAFKA_INGEST_PASSWORD" in result.output
