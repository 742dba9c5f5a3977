"""Apply the Kafka topic spec (``deploy/topics.json``) to a cluster, and list topics.

``plan_topic`` is pure: it compares one ``TopicSpec`` with what the cluster has and says
what to do. ``apply_topics`` runs the plans with kafka-python's ``KafkaAdminClient``:
missing topics are created with their configs; existing topics get more partitions when
the spec asks for more (never fewer: that would re-key every patient) and their spec'd
configs set to the spec's values (other per-topic overrides are left alone and reported).

Durability (:func:`durable_spec`): with a replication factor of 3 or more every topic also
gets ``min.insync.replicas=2``, so a write that producers send with ``acks=all`` (ingest,
both Faust workers, the store stage's DLQ producer) is acknowledged only once at least two
replicas hold it, and one broker can be lost without losing an acknowledged write or
stopping writes. With fewer replicas (1 locally) the broker default (1) stays.

The clients authenticate as ``security`` says, by default as the process's environment does
(:func:`pghd.kafka_security.current`; the local stack passes plaintext for its own broker).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from pghd import kafka_security
from pghd.kafka_security import KafkaSecurity
from pghd.topics import TopicSpec

__all__ = [
    "DEFAULT_SPEC",
    "TopicInfo",
    "TopicPlan",
    "TopicReport",
    "admin_client",
    "apply_topics",
    "describe_topics",
    "durable_spec",
    "plan_topic",
    "read_from_start",
    "report_topic",
]

logger = logging.getLogger(__name__)

DEFAULT_SPEC = Path(__file__).resolve().parents[1] / "topics.json"
MIN_INSYNC_REPLICAS = 2
DURABLE_FROM_REPLICAS = 3
#: Changelogs, like the compacted topics of the spec, are compacted within a week of a write,
#: so an erased patient's old values are gone from the disks by then (docs/security.md).
MAX_COMPACTION_LAG_MS = "604800000"


def durable_spec(spec: TopicSpec, *, replication_factor: int) -> TopicSpec:
    """``spec`` with ``min.insync.replicas=2`` when ``replication_factor`` >= 3 (and the
    spec does not set it itself)."""
    if replication_factor < DURABLE_FROM_REPLICAS or "min.insync.replicas" in spec.config:
        return spec
    config = {**spec.config, "min.insync.replicas": str(MIN_INSYNC_REPLICAS)}
    return TopicSpec(name=spec.name, partitions=spec.partitions, config=config)


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """A topic as the cluster reports it; ``config`` holds its non-default settings."""

    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TopicPlan:
    """What to change so that a topic matches its spec."""

    name: str
    create: bool = False
    partitions: int | None = None  # new total partition count, if it must grow
    config: dict[str, str] = field(default_factory=dict)  # keys to set
    notes: tuple[str, ...] = ()

    @property
    def changes(self) -> bool:
        """True when the plan alters the cluster."""
        return self.create or self.partitions is not None or bool(self.config)


@dataclass(frozen=True, slots=True)
class TopicReport:
    """What ``apply_topics`` did to one topic."""

    name: str
    action: str  # created | updated | unchanged
    partitions: int
    replication_factor: int
    detail: str = ""


def plan_topic(spec: TopicSpec, current: TopicInfo | None) -> TopicPlan:
    """Decide how to make ``current`` (None: absent) match ``spec``."""
    if current is None:
        return TopicPlan(name=spec.name, create=True, partitions=spec.partitions)
    notes = []
    grow = None
    if spec.partitions > current.partitions:
        grow = spec.partitions
    elif spec.partitions < current.partitions:
        notes.append(
            f"has {current.partitions} partitions, spec says {spec.partitions}: never decreased"
        )
    changed = {k: v for k, v in spec.config.items() if current.config.get(k) != v}
    extra = sorted(set(current.config) - set(spec.config))
    if extra:
        notes.append("overrides not in the spec left as they are: " + ", ".join(extra))
    return TopicPlan(name=spec.name, partitions=grow, config=changed, notes=tuple(notes))


@contextlib.contextmanager
def admin_client(
    bootstrap: str,
    *,
    timeout: float = 30.0,
    security: KafkaSecurity | None = None,
    client_id: str = "pghd-topics",
) -> Iterator[Any]:
    """A connected ``KafkaAdminClient`` that is closed on exit."""
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        bootstrap_timeout_ms=int(min(timeout, 10.0) * 1000),
        request_timeout_ms=int(timeout * 1000),
        **(security or kafka_security.current()).kafka_python(),
    )
    try:
        yield admin
    finally:
        admin.close()


def _topic_configs(admin: Any, names: Sequence[str]) -> dict[str, dict[str, str]]:
    """Per-topic overrides (dynamic topic configs) of ``names``."""
    if not names:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    described: Mapping[str, Mapping[str, Any]] = admin.describe_configs(
        resources, config_filter="modified"
    ).get("topic", {})
    return {
        name: {key: str(entry.get("value")) for key, entry in described.get(name, {}).items()}
        for name in names
    }


def describe_topics(
    admin: Any, names: Sequence[str] | None = None, *, include_internal: bool = False
) -> dict[str, TopicInfo]:
    """The topics ``names`` that exist (all topics when None), keyed by name."""
    metadata = admin.describe_topics(list(names) if names is not None else None)
    found = [
        t
        for t in metadata
        if t.get("error_code", 0) == 0 and (include_internal or not t.get("is_internal"))
    ]
    configs = _topic_configs(admin, [t["name"] for t in found])
    infos = {}
    for topic in found:
        partitions = topic.get("partitions") or []
        replicas = max((len(p.get("replica_nodes") or []) for p in partitions), default=0)
        infos[topic["name"]] = TopicInfo(
            name=topic["name"],
            partitions=len(partitions),
            replication_factor=replicas,
            config=configs.get(topic["name"], {}),
        )
    return dict(sorted(infos.items()))


def _execute(admin: Any, plan: TopicPlan, spec: TopicSpec, replication_factor: int) -> None:
    if plan.create:
        admin.create_topics(
            {
                spec.name: {
                    "num_partitions": spec.partitions,
                    "replication_factor": replication_factor,
                    "configs": dict(spec.config),
                }
            },
            wait_for_metadata=True,
        )
        return
    if plan.partitions is not None:
        admin.create_partitions({plan.name: plan.partitions})
    if plan.config:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, plan.name, plan.config)])


def _wait_applied(admin: Any, spec: TopicSpec, *, timeout: float) -> None:
    """Wait until the cluster's metadata shows the change (KRaft applies it asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        plan = plan_topic(spec, describe_topics(admin, [spec.name]).get(spec.name))
        if not plan.changes:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {spec.name}: still differs from the spec: {plan}")
        time.sleep(0.1)


def report_topic(
    spec: TopicSpec, current: TopicInfo | None, plan: TopicPlan, *, replication_factor: int
) -> TopicReport:
    """Describe, for people, what applying ``plan`` did to the topic."""
    if current is None:
        return TopicReport(spec.name, "created", spec.partitions, replication_factor)
    details = []
    if plan.config:
        details.append("set " + ", ".join(f"{k}={v}" for k, v in plan.config.items()))
    if plan.partitions is not None:
        details.append(f"partitions {current.partitions} -> {plan.partitions}")
    details.extend(plan.notes)
    if current.replication_factor != replication_factor:
        details.append(
            f"replication factor is {current.replication_factor}, not {replication_factor}"
        )
    return TopicReport(
        name=spec.name,
        action="updated" if plan.changes else "unchanged",
        partitions=plan.partitions or current.partitions,
        replication_factor=current.replication_factor,
        detail="; ".join(details),
    )


def apply_topics(
    specs: Sequence[TopicSpec],
    *,
    bootstrap: str,
    replication_factor: int = 1,
    timeout: float = 30.0,
    security: KafkaSecurity | None = None,
) -> list[TopicReport]:
    """Create or update the topics in ``specs`` on the cluster at ``bootstrap``."""
    if replication_factor < 1:
        raise ValueError("replication factor must be at least 1")
    reports = []
    with admin_client(bootstrap, timeout=timeout, security=security) as admin:
        existing = describe_topics(admin, [s.name for s in specs])
        for spec in (durable_spec(s, replication_factor=replication_factor) for s in specs):
            current = existing.get(spec.name)
            plan = plan_topic(spec, current)
            if plan.changes:
                logger.info("topic %s: applying %s", spec.name, plan)
                _execute(admin, plan, spec, replication_factor)
                _wait_applied(admin, spec, timeout=timeout)
            reports.append(report_topic(spec, current, plan, replication_factor=replication_factor))
    return reports


def ensure_changelog_topics(
    app: Any,
    *,
    bootstrap: str,
    replication_factor: int = 1,
    timeout: float = 60.0,
    security: KafkaSecurity | None = None,
) -> list[TopicReport]:
    """Create a Faust app's table changelog topics before its worker starts.

    Faust creates them itself while the worker starts, but a topic created moments before
    the consumer group forms can be in the group's metadata with no partitions yet; the
    first table write then crashes the agent with ``PartitionsMismatch`` and, with
    aiokafka's default 5-minute metadata age, keeps crashing it. Created here first (and
    waited for until the metadata shows their partitions), they are complete when the
    worker subscribes. Compacted, with the app's partition count, like Faust's own.
    """
    specs = [
        TopicSpec(
            name=table.changelog_topic.get_topic_name(),
            partitions=table.partitions or app.conf.topic_partitions,
            config={"cleanup.policy": "compact", "max.compaction.lag.ms": MAX_COMPACTION_LAG_MS},
        )
        for table in app.tables.values()
    ]
    return apply_topics(
        specs,
        bootstrap=bootstrap,
        replication_factor=replication_factor,
        timeout=timeout,
        security=security,
    )


def read_from_start(
    bootstrap: str, topic: str, *, idle_ms: int = 1000, security: KafkaSecurity | None = None
) -> list[tuple[bytes | None, bytes]]:
    """``(key, value)`` of every record of ``topic`` with a value, all partitions from the
    beginning, read until nothing arrives for ``idle_ms`` (tests and benches check topics
    with it; plaintext unless ``security`` says otherwise: they read their own broker)."""
    return [
        (key, value)
        for key, value in _records(bootstrap, topic, idle_ms=idle_ms, security=security)
        if value
    ]


def read_table(
    bootstrap: str, topic: str, *, security: KafkaSecurity | None = None
) -> dict[bytes, bytes]:
    """``topic`` read as a table, from the beginning to its end now: the latest value of
    every key, tombstones applied (what a compacted topic holds once compacted; plaintext
    unless ``security`` says otherwise)."""
    latest: dict[bytes, bytes] = {}
    for key, value in _records(bootstrap, topic, idle_ms=1000, to_end=True, security=security):
        if key is None:
            continue
        if value is None:
            latest.pop(key, None)
        else:
            latest[key] = value
    return latest


def _records(
    bootstrap: str,
    topic: str,
    *,
    idle_ms: int,
    to_end: bool = False,
    security: KafkaSecurity | None = None,
) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of ``topic``, all partitions from the beginning, until nothing arrives
    for ``idle_ms`` (and, with ``to_end``, at least up to the end offsets of now)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        consumer_timeout_ms=idle_ms,
        **(security or KafkaSecurity()).kafka_python(),
    )
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts) if to_end else {}
        records = [(m.key, m.value) for m in consumer]
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            records += [(m.key, m.value) for m in consumer]
        return records
    finally:
        consumer.close()
