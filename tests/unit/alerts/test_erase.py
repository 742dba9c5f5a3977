"""The alerts worker's erasure of a patient, against a stand-in Kafka and Grafana.

Kafka is a log (what reached the brokers, in order) and a buffer: Faust's ``send_soon``
(table changelog, alerts topic) only buffers, the producer's ``flush`` moves the buffer to the
log, :func:`pghd.kafka_send.send_all` writes straight to the log. After an erasure, the last
record of every key of the patient must be a tombstone, whatever else ran meanwhile (a page
settling, the timer), and nothing of theirs may be written to Grafana again. The
integration tests run the same code against a real broker.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from faust.types import TP

from alerts import agents
from alerts.agents import Alerts
from alerts.app import build_app
from alerts.grafana import AnnotationQueue
from alerts.lifecycle import Annotate
from alerts.settings import AlertsSettings
from alerts.state import remember_annotation
from pghd import topics, wire
from pghd.alert_commands import AlertCommand, CommandKind
from pghd.audit import AuditEvent
from pghd.erasure import ErasureMarker, new_marker
from pghd.kafka_send import Outgoing
from pghd.table_partition import in_partition

from .conftest import make_anomaly

PATIENT = "p1"
NOTIFY = "json://127.0.0.1:9/hook"


class Kafka:
    """The brokers' log, and the producer's buffer of ``send_soon`` records."""

    def __init__(self) -> None:
        self.log: list[tuple[str, bytes | None, bytes | None]] = []
        self.buffer: list[tuple[str, bytes | None, bytes | None]] = []
        self.flushes = 0

    async def flush(self) -> None:
        self.flushes += 1
        self.log += self.buffer
        self.buffer.clear()

    def last(self, topic: str, key: bytes) -> bytes | None:
        values = [v for t, k, v in self.log if t == topic and k == key]
        assert values, f"nothing for {key!r} on {topic}"
        return values[-1]

    def table(self, topic: str) -> dict[bytes, bytes]:
        live: dict[bytes, bytes] = {}
        for t, k, v in self.log:
            if t != topic or k is None:
                continue
            if v is None:
                live.pop(k, None)
            else:
                live[k] = v
        return live

    def audit(self) -> list[AuditEvent]:
        return [wire.decode(AuditEvent, v) for t, _, v in self.log if t == topics.AUDIT and v]


class Annotator:
    """Grafana: the annotations it holds (id -> patient), searched by patient and deleted."""

    def __init__(self, held: dict[int, str]) -> None:
        self.held = dict(held)
        self.deleted: list[int] = []
        self.written: list[Annotate] = []
        self.find_failures = 0

    def find(self, patient_id: str) -> list[int]:
        if self.find_failures:
            self.find_failures -= 1
            raise OSError("Grafana away")
        return [i for i, p in self.held.items() if p == patient_id]

    def delete(self, annotation_id: int) -> None:
        self.deleted.append(annotation_id)
        self.held.pop(annotation_id, None)

    def execute(self, action: Annotate, *, existing_id: int | None) -> int:
        self.written.append(action)
        new = max(self.held, default=0) + 1
        self.held[new] = action.patient_id
        return new


class World:
    def __init__(self, alerts: Alerts, kafka: Kafka, annotator: Annotator) -> None:
        self.alerts, self.kafka, self.annotator = alerts, kafka, annotator
        self.changelog = alerts.alert_state.changelog_topic.get_topic_name()
        self.read_gate = asyncio.Event()
        self.read_gate.set()
        self.read_failures = 0
        self.page_answered = asyncio.Event()
        self.pages: list[str] = []


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    settings = AlertsSettings(
        app_id=f"erase-{uuid.uuid4().hex[:8]}",
        notify_urls=[NOTIFY],
        grafana_url="http://127.0.0.1:9",
        grafana_backoff_s=0.0,
    )
    app, alerts = build_app(settings)
    alerts.erase_backoff_s = 0.0
    kafka = Kafka()
    annotator = Annotator({})
    assert alerts.annotation_queue is not None
    alerts.annotation_queue.annotator = annotator  # type: ignore[assignment]
    w = World(alerts, kafka, annotator)
    app.producer = kafka  # type: ignore[assignment]
    monkeypatch.setattr(app.assignor, "assigned_actives", lambda: {TP(topics.ANOMALIES, 0)})

    def send_changelog(partition: int | None, key: Any, value: Any) -> None:
        kafka.buffer.append((w.changelog, orjson.dumps(key), orjson.dumps(value)))

    def send_soon(*, key: bytes, value: bytes) -> None:
        kafka.buffer.append((topics.ALERTS, key, value))

    async def send_all(producer: Any, outgoing: Sequence[Outgoing]) -> list[Any]:
        kafka.log += [(t, k, v) for t, k, v, _ in outgoing]
        return [SimpleNamespace(partition=p or 0, offset=n) for n, (*_, p) in enumerate(outgoing)]

    async def read_compacted(topic: str) -> dict[bytes, bytes]:
        await w.read_gate.wait()
        if w.read_failures:
            w.read_failures -= 1
            raise OSError("Kafka away")
        return kafka.table(topic)

    async def notify(url: str, **fields: Any) -> bool:
        w.pages.append(fields["notification_id"])
        await w.page_answered.wait()
        return True

    monkeypatch.setattr(alerts.alert_state, "send_changelog", send_changelog)
    monkeypatch.setattr(alerts.alerts_topic, "send_soon", send_soon)
    monkeypatch.setattr(alerts, "_read_compacted", read_compacted)
    monkeypatch.setattr(agents, "send_all", send_all)
    monkeypatch.setattr(agents, "send_notification", notify)
    yield w
    # pages still waiting for an answer: cancelled, not left pending for the garbage collector to
    # report in whichever later test happens to collect it
    for task in [*alerts._tasks, *alerts.feedback._tasks]:
        task.cancel()


def _event(topic: str, offset: int, payload: bytes, *, key: str = PATIENT) -> Any:
    message = SimpleNamespace(key=key.encode(), topic=topic, partition=0, offset=offset)
    return SimpleNamespace(message=message, value=payload)


def _marker(patient: str = PATIENT) -> ErasureMarker:
    return new_marker(patient, at=datetime.now(UTC), by="admin")


async def _open_alert(w: World, offset: int = 0) -> str:
    """The patient's alert opened, its page under way (waiting for an answer); its
    fingerprint."""
    anomaly = make_anomaly(anomaly_id=f"an-{offset}", detected_at=datetime.now(UTC))
    await w.alerts.handle_batch([_event(topics.ANOMALIES, offset, wire.encode(anomaly))])
    await asyncio.sleep(0)
    assert len(w.pages) == 1
    state = w.alerts.load(PATIENT)
    assert state is not None
    (fingerprint,) = state.alerts
    return fingerprint


def _store_raw(w: World, value: Any) -> None:
    with in_partition(0):
        w.alerts.alert_state.data[PATIENT] = value


async def test_a_page_settling_during_the_erasure_does_not_bring_the_patient_back(
    world: World,
) -> None:
    w = world
    fingerprint = await _open_alert(w)
    w.read_gate.clear()  # the erasure waits for its read of the alerts topic...
    erasing = asyncio.ensure_future(
        w.alerts.erase(_event(topics.ANOMALIES, 1, wire.encode(_marker())))
    )
    await asyncio.sleep(0.01)
    w.page_answered.set()  # ... while the page is delivered and settled
    await asyncio.sleep(0.01)
    w.read_gate.set()
    await erasing
    await w.kafka.flush()  # Faust's buffer reaches Kafka sooner or later

    assert w.kafka.last(w.changelog, orjson.dumps(PATIENT)) is None
    assert w.kafka.last(topics.ALERTS, fingerprint.encode()) is None
    assert w.alerts.load(PATIENT) is None
    assert PATIENT not in w.alerts.erasing


async def test_what_was_buffered_before_the_erasure_reaches_kafka_before_its_tombstones(
    world: World,
) -> None:
    w = world
    fingerprint = await _open_alert(w)
    state = w.alerts.load(PATIENT)
    assert state is not None
    # a timer's change of the state, buffered by Faust just before the marker is read
    w.alerts._store(remember_annotation(state, next(iter(state.alerts.values())).alert_id, 5))
    assert w.kafka.buffer
    await w.alerts.erase(_event(topics.ANOMALIES, 1, wire.encode(_marker())))
    await w.kafka.flush()

    assert w.kafka.last(w.changelog, orjson.dumps(PATIENT)) is None
    assert w.kafka.last(topics.ALERTS, fingerprint.encode()) is None


async def test_an_unreadable_state_is_tombstoned_all_the_same(world: World) -> None:
    w = world
    _store_raw(w, {"patient_id": PATIENT, "partition": 0, "alerts": "not a dict"})
    assert w.alerts.load(PATIENT) is None  # unreadable

    await w.alerts.erase(_event(topics.ANOMALIES, 1, wire.encode(_marker())))

    assert w.kafka.last(w.changelog, orjson.dumps(PATIENT)) is None
    assert w.alerts.alert_state.get(PATIENT) is None
    [report] = w.kafka.audit()
    assert report.outcome == "success" and report.removed["alert_states"] == 1


async def test_every_annotation_grafana_holds_of_the_patient_is_deleted(world: World) -> None:
    """The state names only the "opened" annotation (and not after the alert left it);
    Grafana's search by the patient's tag finds the others."""
    w = world
    await _open_alert(w)
    state = w.alerts.load(PATIENT)
    assert state is not None
    alert = next(iter(state.alerts.values()))
    _store_raw(w, remember_annotation(state, alert.alert_id, 1).model_dump(mode="json"))
    # opened (1, in the state), severity raised (2), acknowledged (3); another patient's (4)
    w.annotator.held = {1: PATIENT, 2: PATIENT, 3: PATIENT, 4: "p2"}

    await w.alerts.erase(_event(topics.ANOMALIES, 1, wire.encode(_marker())))

    assert sorted(w.annotator.deleted) == [1, 2, 3]
    assert w.annotator.held == {4: "p2"}
    [report] = w.kafka.audit()
    assert report.outcome == "success" and report.removed["annotations"] == 3


async def test_a_failed_search_of_grafana_is_reported_and_asking_again_finds_them(
    world: World,
) -> None:
    w = world
    w.annotator.held = {2: PATIENT, 3: PATIENT}
    w.annotator.find_failures = 3  # every try of the first erasure

    await w.alerts.erase(_event(topics.ANOMALIES, 1, wire.encode(_marker())))
    [report] = w.kafka.audit()
    assert report.outcome == "failed"
    assert report.note is not None and "Grafana annotations not searched" in report.note

    await w.alerts.erase(_event(topics.ANOMALIES, 2, wire.encode(_marker())))  # asked again
    assert w.annotator.held == {}
    again = w.kafka.audit()[-1]
    assert again.outcome == "success" and again.removed["annotations"] == 2


async def test_no_annotation_is_written_for_an_erased_patient(world: World) -> None:
    """An "acknowledged" or "resolved" still on its way to Grafana when the marker came."""
    w = world
    await _open_alert(w)
    queue = w.alerts.annotation_queue
    assert queue is not None
    state = w.alerts.load(PATIENT)
    assert state is not None
    alert = next(iter(state.alerts.values()))
    late = Annotate(
        alert_id=alert.alert_id,
        fingerprint=alert.fingerprint,
        patient_id=PATIENT,
        kind="acknowledged",
        text="acknowledged by nurse",
        time=datetime.now(UTC),
        tags=("pghd", f"patient:{PATIENT}"),
    )
    await w.alerts.erase(_event(topics.ANOMALIES, 1, wire.encode(_marker())))

    assert await queue.write(late) is None
    assert w.annotator.written == []


async def test_an_annotation_written_while_its_patient_is_erased_is_deleted() -> None:
    alive = {PATIENT: True}
    annotator = Annotator({})
    action = Annotate(
        alert_id="al-1",
        fingerprint="fp",
        patient_id=PATIENT,
        kind="resolved",
        text="resolved",
        time=datetime.now(UTC),
        time_end=datetime.now(UTC),
    )

    def execute(action: Annotate, *, existing_id: int | None) -> int:
        alive[PATIENT] = False  # the erasure began while Grafana wrote it
        return Annotator.execute(annotator, action, existing_id=existing_id)

    annotator.execute = execute  # type: ignore[method-assign]
    queue = AnnotationQueue(
        annotator,  # type: ignore[arg-type]
        lookup=lambda action: None,
        remember=lambda action, annotation_id: None,
        alive=lambda patient_id: alive[patient_id],
    )
    assert await queue.write(action) is None
    assert annotator.deleted == [1] and annotator.held == {}


async def test_kafka_failing_to_be_read_is_retried_then_reported_never_raised(
    world: World,
) -> None:
    w = world
    fingerprint = await _open_alert(w)
    w.read_failures = 2  # then it answers
    await w.alerts.erase(_event(topics.ANOMALIES, 1, wire.encode(_marker())))
    [report] = w.kafka.audit()
    assert report.outcome == "success"

    fingerprint = await _open_alert_again(w, fingerprint)
    w.read_failures = 100  # Kafka never answers the read
    await w.alerts.erase(_event(topics.ANOMALIES, 3, wire.encode(_marker())))  # must not raise
    failed = w.kafka.audit()[-1]
    assert failed.outcome == "failed"
    assert failed.note is not None and f"{topics.ALERTS} not read" in failed.note
    # what the state knew is erased all the same
    assert w.kafka.last(topics.ALERTS, fingerprint.encode()) is None
    assert w.kafka.last(w.changelog, orjson.dumps(PATIENT)) is None
    assert PATIENT not in w.alerts.erasing


async def _open_alert_again(w: World, fingerprint: str) -> str:
    w.pages.clear()
    w.page_answered.set()
    anomaly = make_anomaly(anomaly_id="an-again", detected_at=datetime.now(UTC))
    await w.alerts.handle_batch([_event(topics.ANOMALIES, 2, wire.encode(anomaly))])
    state = w.alerts.load(PATIENT)
    assert state is not None and fingerprint in state.alerts
    return fingerprint


async def test_an_unexpected_failure_does_not_escape_the_erasure(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world

    async def broken(*args: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(w.alerts, "_erase_annotations", broken)
    await w.alerts.erase(_event(topics.ANOMALIES, 1, wire.encode(_marker())))
    assert PATIENT not in w.alerts.erasing


async def test_the_marker_on_the_commands_topic_erases_too(world: World) -> None:
    """The processors forward the marker to both inputs: a command issued before the erasure
    (a silence) may come after the anomalies' copy and make new state; the commands' copy
    erases it again. One report, with the counts of both."""
    w = world
    await _open_alert(w)
    marker = _marker()
    silence = AlertCommand.model_validate(
        {
            "command_id": "c1",
            "kind": CommandKind.SILENCE,
            "patient_id": PATIENT,
            "by": "nurse",
            "issued_at": datetime.now(UTC),
            "silence": {
                "matchers": {"patient_id": PATIENT},
                "starts_at": datetime.now(UTC),
                "ends_at": datetime(2099, 1, 1, tzinfo=UTC),
                "created_by": "nurse",
            },
        }
    )
    events = [
        _event(topics.ANOMALIES, 1, wire.encode(marker)),
        _event(topics.ALERT_COMMANDS, 0, wire.encode(silence)),
        _event(topics.ALERT_COMMANDS, 1, wire.encode(marker)),
    ]
    await w.alerts._alert_on_inputs(_Stream([events]))  # type: ignore[arg-type]

    assert w.alerts.load(PATIENT) is None
    assert w.kafka.last(w.changelog, orjson.dumps(PATIENT)) is None
    reports = w.kafka.audit()
    assert [r.removed["alert_states"] for r in reports] == [1, 2]
    assert reports[-1].removed["silences"] == 1 and reports[-1].removed["alerts"] == 1
    assert not [t for t, *_ in w.kafka.log if t == topics.DLQ]

    # a copy that finds nothing more adds no report
    again = _marker()
    await w.alerts._alert_on_inputs(  # type: ignore[arg-type]
        _Stream(
            [
                [
                    _event(topics.ALERT_COMMANDS, 2, wire.encode(again)),
                    _event(topics.ANOMALIES, 2, wire.encode(again)),
                ]
            ]
        )
    )
    assert len(w.kafka.audit()) == 3


class _Stream:
    """The agent's stream: ``take_events`` gives the batches."""

    def __init__(self, batches: list[list[Any]]) -> None:
        self.batches = batches

    def take_events(self, size: int, *, within: float) -> AsyncIterator[list[Any]]:
        async def each() -> AsyncIterator[list[Any]]:
            for batch in self.batches:
                yield batch

        return each()


async def test_an_alert_only_the_topic_still_holds_is_tombstoned_too(world: World) -> None:
    """An older incident's alert left the state but is still the latest record of its
    fingerprint on pghd.alerts.v1: found by its labels' patient and tombstoned."""
    from tests.unit.alerts.api.conftest import make_alert

    w = world
    old = make_alert(patient_id=PATIENT, problem="spo2")
    other = make_alert(patient_id="someone-else", problem="spo2")
    for alert in (old, other):
        w.kafka.log.append((topics.ALERTS, alert.fingerprint.encode(), wire.encode(alert)))
    await w.alerts.erase(_event(topics.ANOMALIES, 1, wire.encode(_marker())))
    live = w.kafka.table(topics.ALERTS)
    assert old.fingerprint.encode() not in live
    assert other.fingerprint.encode() in live
