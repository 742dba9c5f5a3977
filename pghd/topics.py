"""Kafka topic names and the topic spec (partitions, retention, compaction)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ALERTS",
    "ALERT_COMMANDS",
    "ANOMALIES",
    "AUDIT",
    "CARE_PLANS",
    "DIGESTS",
    "DLQ",
    "ENROLLMENTS",
    "FEEDBACK_SUBSCRIPTIONS",
    "MEASUREMENTS",
    "POINTS",
    "TopicSpec",
    "load_spec",
]

MEASUREMENTS = "pghd.measurements.v1"
ANOMALIES = "pghd.anomalies.v1"
ALERTS = "pghd.alerts.v1"
ALERT_COMMANDS = "pghd.alert-commands.v1"  # care-team actions, keyed by patient id
DLQ = "pghd.dlq.v1"
POINTS = "pghd.points.v1"  # judged InfluxDB points, one record per patient per batch
CARE_PLANS = "pghd.care-plans.v1"  # compacted: the CarePlan per patient id (None: cleared)
ENROLLMENTS = "pghd.enrollments.v1"  # compacted: the whole Enrollment per patient id
AUDIT = "pghd.audit.v1"  # append-only: an AuditEvent per patient-data request
DIGESTS = "pghd.digests.v1"  # daily digests sent, compacted, keyed "team|day"
# compacted: a patient's feedback subscription (app URL, consented kinds, signing secret)
FEEDBACK_SUBSCRIPTIONS = "pghd.feedback-subscriptions.v1"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic as the spec in ``deploy/topics.json`` declares it."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def parse_spec(document: dict[str, Any]) -> list[TopicSpec]:
    """Validate and return the topics of a spec document."""
    topics = []
    for i, raw in enumerate(document.get("topics", [])):
        name = raw.get("name")
        partitions = raw.get("partitions")
        if not isinstance(name, str) or not name:
            raise ValueError(f"topics[{i}].name must be a non-empty string")
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise ValueError(f"topics[{i}].partitions must be a positive integer")
        config = {str(k): str(v) for k, v in (raw.get("config") or {}).items()}
        topics.append(TopicSpec(name=name, partitions=partitions, config=config))
    if not topics:
        raise ValueError("the topic spec declares no topics")
    return topics


def load_spec(path: Path) -> list[TopicSpec]:
    """Read the topic spec file at ``path``."""
    return parse_spec(json.loads(path.read_text()))
