"""The topic spec (deploy/topics.json), its parser, and how a spec is planned onto a cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deploy.local.kafka import KAFKA_POM, kafka_version
from deploy.local.topics import DEFAULT_SPEC, TopicInfo, durable_spec, plan_topic, report_topic
from pghd.topics import (
    ALERT_COMMANDS,
    ALERTS,
    ANOMALIES,
    AUDIT,
    CARE_PLANS,
    DIGESTS,
    DLQ,
    ENROLLMENTS,
    FEEDBACK_SUBSCRIPTIONS,
    MEASUREMENTS,
    POINTS,
    TopicSpec,
    load_spec,
    parse_spec,
)


@pytest.fixture(scope="module")
def spec() -> dict[str, TopicSpec]:
    return {t.name: t for t in load_spec(DEFAULT_SPEC)}


def test_the_deploy_spec_declares_exactly_the_pipeline_topics(
    spec: dict[str, TopicSpec],
) -> None:
    assert set(spec) == {
        MEASUREMENTS,
        ANOMALIES,
        ALERTS,
        ALERT_COMMANDS,
        DLQ,
        ENROLLMENTS,
        DIGESTS,
        CARE_PLANS,
        POINTS,
        AUDIT,
        FEEDBACK_SUBSCRIPTIONS,
    }


def test_the_audit_trail_is_append_only_and_kept_six_years(spec: dict[str, TopicSpec]) -> None:
    """HIPAA asks for six years of documentation; compaction would drop events."""
    audit = spec[AUDIT]
    assert audit.config.get("cleanup.policy", "delete") == "delete"
    assert int(audit.config["retention.ms"]) >= 6 * 365 * 86400 * 1000


def test_points_are_partitioned_like_measurements_and_kept_as_long(
    spec: dict[str, TopicSpec],
) -> None:
    """The store stage's catch-up buffer: an InfluxDB outage shorter than its retention loses
    nothing, and a patient's points stay in the partition of the patient's readings."""
    points, measurements = spec[POINTS], spec[MEASUREMENTS]
    assert points.partitions == measurements.partitions
    assert int(points.config["retention.ms"]) >= int(measurements.config["retention.ms"])


def test_three_replicas_demand_two_in_sync_and_fewer_keep_the_default(
    spec: dict[str, TopicSpec],
) -> None:
    for topic in spec.values():
        three = durable_spec(topic, replication_factor=3)
        assert three.config["min.insync.replicas"] == "2"
        assert {k: v for k, v in three.config.items() if k != "min.insync.replicas"} == topic.config
        assert durable_spec(topic, replication_factor=1) == topic
        assert durable_spec(topic, replication_factor=2) == topic


def test_enrollments_are_compacted_per_patient_like_alerts(spec: dict[str, TopicSpec]) -> None:
    enrollments = spec[ENROLLMENTS]
    assert enrollments.config["cleanup.policy"] == "compact"
    assert enrollments.partitions == spec[ALERTS].partitions


def test_every_topic_has_a_positive_partition_count_and_string_configs(
    spec: dict[str, TopicSpec],
) -> None:
    for topic in spec.values():
        assert topic.partitions >= 1
        assert all(isinstance(v, str) for v in topic.config.values())


def test_feedback_subscriptions_are_compacted_per_patient(spec: dict[str, TopicSpec]) -> None:
    """The latest subscription per patient, read whole by every alerts worker; a tombstone
    (unsubscribed, erased) drops it, and an old secret leaves the log within a week."""
    subscriptions = spec[FEEDBACK_SUBSCRIPTIONS]
    assert subscriptions.config["cleanup.policy"] == "compact"
    assert "retention.ms" not in subscriptions.config
    assert int(subscriptions.config["max.compaction.lag.ms"]) <= 7 * 24 * 3600 * 1000


def test_alerts_topic_is_compacted_and_keeps_state(spec: dict[str, TopicSpec]) -> None:
    alerts = spec[ALERTS]
    assert alerts.config["cleanup.policy"] == "compact"
    assert "retention.ms" not in alerts.config
    assert int(alerts.config["min.compaction.lag.ms"]) > 0


def test_stream_topics_delete_old_data(spec: dict[str, TopicSpec]) -> None:
    for name in (MEASUREMENTS, ANOMALIES, DLQ):
        assert spec[name].config.get("cleanup.policy", "delete") == "delete"
        assert int(spec[name].config["retention.ms"]) >= 24 * 3600 * 1000


def test_pipeline_topics_share_a_partition_count(spec: dict[str, TopicSpec]) -> None:
    # Keyed by patient end to end: the same count keeps co-partitioning simple.
    assert spec[MEASUREMENTS].partitions == spec[ANOMALIES].partitions == spec[ALERTS].partitions
    assert spec[ALERT_COMMANDS].partitions == spec[ANOMALIES].partitions  # co-partitioned


def test_config_values_are_stringified() -> None:
    [topic] = parse_spec({"topics": [{"name": "t", "partitions": 1, "config": {"x": 5}}]})
    assert topic == TopicSpec("t", 1, {"x": "5"})


def test_config_may_be_absent_or_null() -> None:
    topics = parse_spec(
        {"topics": [{"name": "a", "partitions": 1}, {"name": "b", "partitions": 2, "config": None}]}
    )
    assert [(t.name, t.partitions, t.config) for t in topics] == [("a", 1, {}), ("b", 2, {})]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({}, "declares no topics"),
        ({"topics": []}, "declares no topics"),
        ({"topics": [{"partitions": 1}]}, r"topics\[0\]\.name"),
        ({"topics": [{"name": "", "partitions": 1}]}, r"topics\[0\]\.name"),
        ({"topics": [{"name": 7, "partitions": 1}]}, r"topics\[0\]\.name"),
        ({"topics": [{"name": "a", "partitions": 1}, {"name": "b"}]}, r"topics\[1\]\.partitions"),
        ({"topics": [{"name": "a", "partitions": 0}]}, r"topics\[0\]\.partitions"),
        ({"topics": [{"name": "a", "partitions": -3}]}, r"topics\[0\]\.partitions"),
        ({"topics": [{"name": "a", "partitions": "8"}]}, r"topics\[0\]\.partitions"),
        ({"topics": [{"name": "a", "partitions": 2.0}]}, r"topics\[0\]\.partitions"),
    ],
)
def test_parse_spec_rejects_bad_documents(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_spec(document)


def test_parse_spec_rejects_boolean_partitions() -> None:
    with pytest.raises(ValueError, match="partitions"):
        parse_spec({"topics": [{"name": "a", "partitions": True}]})


def test_load_spec_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "topics.json"
    path.write_text(json.dumps({"topics": [{"name": "x", "partitions": 3}]}))
    assert load_spec(path) == [TopicSpec("x", 3, {})]


def test_load_spec_reports_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "topics.json"
    path.write_text("{not json")
    with pytest.raises(ValueError):
        load_spec(path)


def test_plan_creates_a_missing_topic() -> None:
    plan = plan_topic(TopicSpec("t", 4, {"retention.ms": "1"}), None)
    assert plan.create and plan.changes and plan.partitions == 4


def test_plan_for_a_matching_topic_changes_nothing() -> None:
    spec = TopicSpec("t", 4, {"retention.ms": "1"})
    plan = plan_topic(spec, TopicInfo("t", 4, 1, {"retention.ms": "1"}))
    assert not plan.changes and plan.notes == ()


def test_plan_grows_partitions_and_sets_differing_configs_only() -> None:
    spec = TopicSpec("t", 8, {"retention.ms": "2", "cleanup.policy": "compact"})
    plan = plan_topic(spec, TopicInfo("t", 4, 1, {"cleanup.policy": "compact"}))
    assert not plan.create
    assert plan.partitions == 8
    assert plan.config == {"retention.ms": "2"}


def test_plan_never_shrinks_and_leaves_other_overrides_alone() -> None:
    spec = TopicSpec("t", 2, {})
    plan = plan_topic(spec, TopicInfo("t", 8, 1, {"segment.ms": "10"}))
    assert not plan.changes
    assert any("never decreased" in note for note in plan.notes)
    assert any("segment.ms" in note for note in plan.notes)


def test_report_names_what_changed() -> None:
    spec = TopicSpec("t", 8, {"retention.ms": "2"})
    current = TopicInfo("t", 4, 3, {})
    report = report_topic(spec, current, plan_topic(spec, current), replication_factor=1)
    assert (report.action, report.partitions, report.replication_factor) == ("updated", 8, 3)
    assert report.detail == (
        "set retention.ms=2; partitions 4 -> 8; replication factor is 3, not 1"
    )


def test_report_of_a_created_topic() -> None:
    spec = TopicSpec("t", 2, {})
    report = report_topic(spec, None, plan_topic(spec, None), replication_factor=3)
    assert (report.action, report.partitions, report.replication_factor) == ("created", 2, 3)


def test_the_kafka_pom_pins_a_3x_kafka() -> None:
    assert kafka_version(KAFKA_POM).startswith("3.")


def test_care_plans_are_co_partitioned_and_keep_their_tombstones(
    spec: dict[str, TopicSpec],
) -> None:
    """The worker judging a patient must hold their plan, and a cleared plan must outlive
    the readings a stopped worker could still have to catch up on."""
    plans = spec[CARE_PLANS]
    assert plans.partitions == spec[MEASUREMENTS].partitions
    assert plans.config["cleanup.policy"] == "compact"
    assert int(plans.config["delete.retention.ms"]) >= int(
        spec[MEASUREMENTS].config["retention.ms"]
    )


def test_applying_at_three_replicas_adds_min_insync_to_an_existing_topic(
    spec: dict[str, TopicSpec],
) -> None:
    """``pghd topics apply --replication-factor 3`` on a cluster made before the setting."""
    measurements = spec[MEASUREMENTS]
    current = TopicInfo(
        name=measurements.name,
        partitions=measurements.partitions,
        replication_factor=3,
        config=dict(measurements.config),
    )
    plan = plan_topic(durable_spec(measurements, replication_factor=3), current)
    assert plan.config == {"min.insync.replicas": "2"}
    assert not plan.create and plan.partitions is None


def test_erased_data_leaves_every_topic_within_a_documented_bound(
    spec: dict[str, TopicSpec],
) -> None:
    """docs/security.md promises: compacted topics drop an erased patient's old values
    within 7 days (max.compaction.lag.ms), streams within 30 days (their retention); only
    the audit trail is kept longer."""
    week_ms, month_ms = 7 * 24 * 3600 * 1000, 30 * 24 * 3600 * 1000
    for name, topic in spec.items():
        if topic.config.get("cleanup.policy") == "compact":
            assert int(topic.config["max.compaction.lag.ms"]) <= week_ms, name
        elif name != AUDIT:
            assert int(topic.config["retention.ms"]) <= month_ms, name
