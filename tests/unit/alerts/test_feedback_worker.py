"""The alerts worker's feedback glue, against a stand-in Kafka and app: events travel with the
batch that made them, each admitted event is sent in its own task (a slow app holds up only
itself), retried, resent after a restart, and an erasure takes the subscription with it."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from faust.types import TP

from alerts import agents
from alerts.agents import Alerts
from alerts.app import build_app
from alerts.feedback import worker as feedback_worker
from alerts.feedback.outbox import FeedbackState, Pending
from alerts.feedback.sender import Attempt
from alerts.settings import AlertsSettings
from pghd import topics, wire
from pghd.alerting import GroupingPolicy
from pghd.contracts import Severity
from pghd.erasure import new_marker
from pghd.feedback.events import FeedbackEvent, FindingDetails, event_id
from pghd.feedback.subscription import FeedbackSubscription, new_secret, subscribe
from pghd.feedback.wording import Kind
from pghd.kafka_send import Outgoing
from pghd.table_partition import in_partition

from .conftest import make_anomaly
from .test_erase import Kafka

A, B = "p1", "p2"
URLS = {A: "https://a.example.org/hook", B: "https://b.example.org/hook"}


class App:
    """Patients' apps, as the sender sees them: an answer per attempt, or a wait."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, FeedbackEvent]] = []
        self.refused: list[tuple[str, FeedbackEvent]] = []
        self.fail: dict[str, int] = {}
        self.hold: dict[str, asyncio.Event] = {}

    async def send(
        self,
        url: str,
        key: bytes,
        event: FeedbackEvent,
        *,
        still: Callable[[], bool] | None = None,
    ) -> Attempt:
        if url in self.hold:  # the wait for the patient's turn and the lookup
            await self.hold[url].wait()
        if still is not None and not still():
            self.refused.append((url, event))
            return Attempt(ok=False, detail="not sent: withdrawn or erased while it waited")
        self.sent.append((url, event))
        if self.fail.get(url, 0) > 0:
            self.fail[url] -= 1
            return Attempt(ok=False, detail="answered HTTP 500", status=500)
        return Attempt(ok=True, detail="delivered", status=200)

    async def close(self) -> None:
        return None


class World:
    def __init__(self, alerts: Alerts, kafka: Kafka, app: App) -> None:
        self.alerts, self.kafka, self.app = alerts, kafka, app
        self.feedback = alerts.feedback
        self.topic = self.feedback.topic_name
        self.changelog = self.feedback.table.changelog_topic.get_topic_name()
        self.owned: set[TP] = set()

    def subscribe(self, patient: str, *kinds: Kind) -> FeedbackSubscription:
        made = subscribe(
            patient,
            url=URLS[patient],
            kinds=kinds or (Kind.FINDING_OPENED,),
            now=datetime.now(UTC) - timedelta(hours=1),
            secret=new_secret(),
        )
        self.feedback.book.apply_record(patient.encode(), wire.encode(made))
        return made

    def events_written(self) -> list[FeedbackEvent]:
        return [
            wire.decode(FeedbackEvent, v) for t, _, v in self.kafka.log if t == self.topic and v
        ]

    async def settle(self) -> None:
        for _ in range(20):
            await asyncio.sleep(0)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    settings = AlertsSettings(
        app_id=f"feedback-{uuid.uuid4().hex[:8]}",
        feedback_backoff_s=0.0,
        feedback_attempts=3,
    )
    faust_app, alerts = build_app(settings)
    kafka, patient_apps = Kafka(), App()
    w = World(alerts, kafka, patient_apps)
    faust_app.producer = kafka  # type: ignore[assignment]
    alerts.feedback.sender = patient_apps  # type: ignore[assignment]
    alerts.feedback.book.ready = True
    owned = w.owned = {TP(topics.ANOMALIES, 0), TP(w.topic, 0)}
    monkeypatch.setattr(faust_app.assignor, "assigned_actives", lambda: owned)

    def changelog_of(topic: str) -> Any:
        def send_changelog(partition: int | None, key: Any, value: Any) -> None:
            kafka.buffer.append((topic, orjson.dumps(key), orjson.dumps(value)))

        return send_changelog

    async def send_all(producer: Any, outgoing: Sequence[Outgoing]) -> list[Any]:
        kafka.log += [(t, k, v) for t, k, v, _ in outgoing]
        return [SimpleNamespace(partition=p or 0, offset=n) for n, (*_, p) in enumerate(outgoing)]

    async def read_compacted(topic: str) -> dict[bytes, bytes]:
        return kafka.table(topic)

    async def no_page(url: str, **fields: Any) -> bool:
        return True

    alert_changelog = alerts.alert_state.changelog_topic.get_topic_name()
    monkeypatch.setattr(alerts.alert_state, "send_changelog", changelog_of(alert_changelog))
    monkeypatch.setattr(alerts.feedback.table, "send_changelog", changelog_of(w.changelog))
    monkeypatch.setattr(alerts.alerts_topic, "send_soon", lambda **kw: None)
    monkeypatch.setattr(alerts, "_read_compacted", read_compacted)
    monkeypatch.setattr(agents, "send_all", send_all)
    monkeypatch.setattr(feedback_worker, "send_all", send_all)
    monkeypatch.setattr(agents, "send_notification", no_page)
    yield w
    # POSTs still waiting for an app: cancelled, not left pending for the garbage collector to
    # report in whichever later test happens to collect it
    for task in [*alerts._tasks, *alerts.feedback._tasks]:
        task.cancel()


def _input(patient: str, offset: int, payload: bytes, topic: str = topics.ANOMALIES) -> Any:
    message = SimpleNamespace(key=patient.encode(), topic=topic, partition=0, offset=offset)
    return SimpleNamespace(message=message, value=payload)


def _anomaly(patient: str, n: int) -> bytes:
    return wire.encode(
        make_anomaly(
            anomaly_id=f"an-{patient}-{n}", patient_id=patient, detected_at=datetime.now(UTC)
        )
    )


def _event(patient: str, n: int, kind: Kind = Kind.FINDING_OPENED) -> FeedbackEvent:
    now = datetime.now(UTC)
    return FeedbackEvent(
        id=event_id(patient, str(n), kind.value),
        kind=kind,
        patient_id=patient,
        occurred_at=now,
        severity=Severity.WARNING,
        message="words",
        details=FindingDetails(finding_id=f"al-{n}", metric="spo2", opened_at=now),
    )


async def test_a_findings_event_is_written_with_the_batch_that_made_it(world: World) -> None:
    w = world
    w.subscribe(A)
    await w.alerts.handle_batch([_input(A, 0, _anomaly(A, 0)), _input(B, 1, _anomaly(B, 1))])
    (event,) = w.events_written()  # B has no subscription: nothing of theirs is written
    assert event.kind is Kind.FINDING_OPENED and event.patient_id == A
    topics_written = [t for t, _, _ in w.kafka.log]
    assert topics_written.index(topics.ALERTS) < topics_written.index(w.topic), "one send"
    w.feedback.book.ready = False  # subscriptions not read yet: written, the sender decides
    await w.alerts.handle_batch([_input("p3", 2, _anomaly("p3", 2))])
    assert [e.patient_id for e in w.events_written()] == [A, "p3"]


async def test_an_admitted_event_is_sent_and_settled_an_unconsented_one_never(
    world: World,
) -> None:
    w = world
    w.subscribe(A, Kind.FINDING_OPENED)
    opened, refused = _event(A, 1), _event(A, 2, Kind.FINDING_RESOLVED)
    assert (
        w.feedback.on_event(_input(A, 0, wire.encode(opened), w.topic), now=datetime.now(UTC))
        == "queued"
    )
    assert (
        w.feedback.on_event(_input(A, 1, wire.encode(refused), w.topic), now=datetime.now(UTC))
        == "unconsented"
    )
    assert (
        w.feedback.on_event(_input(B, 2, wire.encode(_event(B, 3)), w.topic), now=datetime.now(UTC))
        == "unconsented"
    )
    await w.settle()
    assert w.app.sent == [(URLS[A], opened)]
    state = w.feedback.load(A)
    assert state is not None and state.pending == {} and opened.id in state.settled
    assert w.feedback.load(B) is None, "no state for a patient without a subscription"
    assert w.kafka.flushes >= 1, "the outbox entry was flushed before the POST"
    sent = w.alerts.metrics.feedback_events.labels(kind="finding_opened", outcome="sent")
    assert sent._value.get() == 1
    again = w.feedback.on_event(_input(A, 3, wire.encode(opened), w.topic), now=datetime.now(UTC))
    assert again == "duplicate"  # the same transition made again after a crash


async def test_a_slow_app_holds_up_only_its_own_events(world: World) -> None:
    w = world
    w.subscribe(A)
    w.subscribe(B)
    w.app.hold[URLS[A]] = asyncio.Event()  # A's app never answers while the test runs
    w.feedback.on_event(_input(A, 0, wire.encode(_event(A, 1)), w.topic), now=datetime.now(UTC))
    w.feedback.on_event(_input(B, 1, wire.encode(_event(B, 1)), w.topic), now=datetime.now(UTC))
    await w.settle()
    assert [url for url, _ in w.app.sent] == [URLS[B]]
    # and the alerts agent goes on: a new finding of A's is grouped and published meanwhile
    await asyncio.wait_for(w.alerts.handle_batch([_input(A, 9, _anomaly(A, 9))]), 1)
    state = w.alerts.load(A)
    assert state is not None and len(state.alerts) == 1
    w.app.hold[URLS[A]].set()
    await w.settle()
    assert sorted(url for url, _ in w.app.sent) == sorted(URLS.values())


async def test_a_failing_app_is_retried_by_the_timer_and_given_up_after_n(world: World) -> None:
    w = world
    w.subscribe(A)
    w.app.fail[URLS[A]] = 1  # 500, then 200
    w.feedback.on_event(_input(A, 0, wire.encode(_event(A, 1)), w.topic), now=datetime.now(UTC))
    await w.settle()
    state = w.feedback.load(A)
    assert state is not None and next(iter(state.pending.values())).attempts == 1
    await w.feedback.tick()
    await w.settle()
    assert len(w.app.sent) == 2
    state = w.feedback.load(A)
    assert state is not None and state.pending == {}
    w.app.fail[URLS[A]] = 10
    w.feedback.on_event(_input(A, 1, wire.encode(_event(A, 2)), w.topic), now=datetime.now(UTC))
    for _ in range(4):
        await w.settle()
        await w.feedback.tick()
    await w.settle()
    assert len(w.app.sent) == 2 + 3, "three attempts, then given up"
    failed = w.alerts.metrics.feedback_events.labels(kind="finding_opened", outcome="failed")
    assert failed._value.get() == 1


async def test_an_entry_a_restart_left_unsent_is_sent_by_the_timer(world: World) -> None:
    """The worker died between storing the outbox entry and hearing the app's answer: the
    restarted one sends it again, with the same id (the app drops a repeat by it)."""
    w = world
    w.subscribe(A)
    left = _event(A, 1)
    now = datetime.now(UTC)
    state = FeedbackState(
        patient_id=A,
        partition=0,
        pending={left.id: Pending(event=left, queued_at=now, next_at=now)},
    )
    with in_partition(0):
        w.feedback.table.data[A] = state.model_dump(mode="json")
    await w.feedback.tick()
    await w.settle()
    assert w.app.sent == [(URLS[A], left)]


async def test_an_unsubscribed_patients_pending_events_are_dropped_not_sent(world: World) -> None:
    w = world
    w.subscribe(A)
    w.app.hold[URLS[A]] = asyncio.Event()
    w.feedback.on_event(_input(A, 0, wire.encode(_event(A, 1)), w.topic), now=datetime.now(UTC))
    w.feedback.on_event(_input(A, 1, wire.encode(_event(A, 2)), w.topic), now=datetime.now(UTC))
    await w.settle()
    w.feedback.book.apply_record(A.encode(), None)  # DELETE /v1/me/feedback
    w.app.hold.pop(URLS[A]).set()
    await w.feedback.tick()
    await w.settle()
    assert w.app.sent == []
    assert w.feedback.load(A) is None  # nothing is kept for a patient without a subscription
    withdrawn = w.alerts.metrics.feedback_events.labels(kind="finding_opened", outcome="withdrawn")
    assert withdrawn._value.get() >= 1


async def test_an_erasure_tombstones_the_subscription_and_the_feedback_state(
    world: World,
) -> None:
    w = world
    w.subscribe(A)
    w.app.hold[URLS[A]] = asyncio.Event()
    w.feedback.on_event(_input(A, 0, wire.encode(_event(A, 1)), w.topic), now=datetime.now(UTC))
    await w.settle()
    marker = new_marker(A, at=datetime.now(UTC), by="admin")
    await w.alerts.erase(_input(A, 5, wire.encode(marker)))
    await w.kafka.flush()

    assert w.kafka.last(topics.FEEDBACK_SUBSCRIPTIONS, A.encode()) is None
    assert w.kafka.last(w.changelog, orjson.dumps(A)) is None
    assert w.feedback.book.get(A) is None and w.feedback.load(A) is None
    (report,) = [r for r in w.kafka.audit() if r.patients == [A]]
    assert report.removed is not None and report.removed["feedback_subscriptions"] == 1
    assert report.removed["feedback_pending"] == 1
    w.app.hold[URLS[A]].set()  # the POST under way answers: nothing of theirs is written back
    await w.settle()
    assert w.feedback.load(A) is None
    later = w.feedback.on_event(
        _input(A, 6, wire.encode(_event(A, 7)), w.topic), now=datetime.now(UTC)
    )
    assert later == "unconsented"


def _points(patient: str, offset: int, at: datetime) -> Any:
    line = (
        f"vitals,device=watch-1,metric=heart_rate,patient_id={patient},source=acme,unit=/min"
        " value=64 1"
    )
    value = orjson.dumps({"schema_version": 1, "patient_id": patient, "lines": [line]})
    message = SimpleNamespace(
        key=patient.encode(), topic=topics.POINTS, partition=0, offset=offset,
        timestamp=at.timestamp(),
    )  # fmt: skip
    return SimpleNamespace(message=message, value=value)


async def test_a_source_silent_for_a_day_is_told_once_to_a_consenting_patient(
    world: World,
) -> None:
    w = world
    w.subscribe(A, Kind.DEVICE_SILENT)
    w.subscribe(B, Kind.FINDING_OPENED)  # no consent to device_silent
    day_ago = datetime.now(UTC) - timedelta(hours=25)
    w.feedback.on_points(_points(A, 0, day_ago))
    w.feedback.on_points(_points(B, 1, day_ago))
    state = w.feedback.load(A)
    assert state is not None and state.last_seen == {"acme": day_ago}
    assert w.feedback.load(B) is None, "not even read for a patient who did not consent"
    await w.feedback.tick()
    await w.settle()
    ((url, event),) = w.app.sent
    assert url == URLS[A] and event.kind is Kind.DEVICE_SILENT
    assert "We have not received any readings from acme since" in event.message
    await w.feedback.tick()
    await w.settle()
    assert len(w.app.sent) == 1, "told once"


async def test_a_finding_the_timer_resolves_is_published_for_the_feedback_agent(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quiet period's resolution happens in the timer, not in a batch: its event goes
    out through the producer's buffer, as the alert does."""
    w = world
    w.subscribe(A, Kind.FINDING_RESOLVED)
    buffered: list[tuple[bytes, bytes]] = []
    monkeypatch.setattr(
        w.feedback.events, "send_soon", lambda **kw: buffered.append((kw["key"], kw["value"]))
    )
    monkeypatch.setattr(w.alerts, "policy", GroupingPolicy(auto_resolve_after_s=1))
    quiet_since = datetime.now(UTC) - timedelta(seconds=30)
    anomaly = make_anomaly(anomaly_id="an-q", patient_id=A, detected_at=quiet_since)
    await w.alerts.handle_batch([_input(A, 0, wire.encode(anomaly))])
    assert w.events_written() == [], "A did not consent to finding_opened: not written"
    await w.alerts.tick()
    ((key, value),) = buffered
    event = wire.decode(FeedbackEvent, value)
    assert key == A.encode() and event.kind is Kind.FINDING_RESOLVED
    await w.alerts.tick()
    assert len(buffered) == 1, "resolved once"


async def test_a_worker_that_lost_the_partition_during_a_post_writes_nothing_back(
    world: World,
) -> None:
    """The new owner sends what is pending again (same id) and writes its outcome; a write
    from the old owner could undo the new owner's changes."""
    w = world
    w.subscribe(A)
    w.app.hold[URLS[A]] = asyncio.Event()
    w.feedback.on_event(_input(A, 0, wire.encode(_event(A, 1)), w.topic), now=datetime.now(UTC))
    await w.settle()
    written = len(w.kafka.buffer) + len(w.kafka.log)
    w.owned.discard(TP(w.topic, 0))  # a rebalance gave the partition to another worker
    w.app.hold[URLS[A]].set()
    await w.settle()
    assert len(w.app.sent) == 1
    assert len(w.kafka.buffer) + len(w.kafka.log) == written, "no outcome written from here"
    await w.feedback.tick()  # and this worker's timer leaves the partition alone
    await w.settle()
    assert len(w.app.sent) == 1


def _vitals(patient: str, offset: int, at: datetime, n: int) -> Any:
    lines = [
        f"vitals,channel={channel},device=cuff-1,metric=blood_pressure,patient_id={patient},"
        f"source=acme,unit=mmHg value=120 {k}"
        for k in range(n)
        for channel in ("systolic", "diastolic")
    ]
    value = orjson.dumps({"schema_version": 1, "patient_id": patient, "lines": lines})
    message = SimpleNamespace(
        key=patient.encode(), topic=topics.POINTS, partition=0, offset=offset,
        timestamp=at.timestamp(),
    )  # fmt: skip
    return SimpleNamespace(message=message, value=value)


def _weekly_world(w: World, now: datetime) -> tuple[datetime, datetime]:
    """Half-hour weeks, the last one over a quarter of an hour ago: its start and end."""
    anchor = now - timedelta(minutes=15)
    w.feedback.settings = w.feedback.settings.model_copy(  # type: ignore[attr-defined]
        update={"feedback_week_anchor": anchor, "feedback_week_s": 1800.0}
    )
    for patient, kinds in ((A, [Kind.WEEKLY_SUMMARY]), (B, [Kind.DEVICE_SILENT])):
        made = subscribe(
            patient, url=URLS[patient], kinds=kinds, now=now - timedelta(hours=2),
            secret=new_secret(),
        )  # fmt: skip
        w.feedback.book.apply_record(patient.encode(), wire.encode(made))
    return anchor - timedelta(minutes=30), anchor


async def test_a_consenting_patient_gets_one_weekly_summary_and_no_one_else(
    world: World,
) -> None:
    w, now = world, datetime.now(UTC)
    start, end = _weekly_world(w, now)
    w.feedback.on_points(_vitals(A, 0, start + timedelta(minutes=1), 3))
    w.feedback.on_points(_vitals(A, 1, start + timedelta(minutes=2), 2))
    w.feedback.on_points(_vitals(B, 2, start + timedelta(minutes=1), 3))  # no consent to it
    opened = _event(A, 1).model_copy(update={"occurred_at": start + timedelta(minutes=3)})
    assert w.feedback.wanted(opened), "written for the week's summary, not to be sent"
    assert w.feedback.on_event(_input(A, 0, wire.encode(opened), w.topic), now=now) == (
        "unconsented"
    )
    await w.feedback.tick()
    await w.settle()
    ((url, event),) = w.app.sent
    assert url == URLS[A] and event.kind is Kind.WEEKLY_SUMMARY and event.patient_id == A
    days = len({(start + timedelta(minutes=m)).date() for m in (1, 2)})
    assert event.message == (
        f"Your week: readings came in on {days} of the last 7 days (5 in all). New findings"
        " this week: 1; your care team has seen them."
    )
    assert event.occurred_at == end
    await w.feedback.tick()
    await w.settle()
    assert len(w.app.sent) == 1, "once per week"
    state = w.feedback.load(B)
    assert state is not None and state.weeks == {}, "not counted without consent"
    assert state.summary_done is None


async def test_a_restarted_worker_does_not_send_the_week_again(world: World) -> None:
    w, now = world, datetime.now(UTC)
    start, _ = _weekly_world(w, now)
    w.feedback.on_points(_vitals(A, 0, start + timedelta(minutes=1), 1))
    await w.feedback.tick()
    await w.settle()
    assert len(w.app.sent) == 1
    # a new worker's table, restored from the changelog: what this one wrote last
    written = [*w.kafka.log, *w.kafka.buffer]
    (stored,) = [v for t, k, v in written if t == w.changelog and k == orjson.dumps(A)][-1:]
    assert stored is not None
    with in_partition(0):
        w.feedback.table.data[A] = orjson.loads(stored)
    w.feedback.in_flight.clear()
    await w.feedback.tick()
    await w.settle()
    assert len(w.app.sent) == 1


async def test_a_send_that_raises_is_a_failed_attempt_and_given_up_like_any(world: World) -> None:
    """A send that raises (the real Sender did, for a host the idna codec refuses) was never
    settled: the timer spawned it again every tick, forever. Now it is a failed attempt."""
    w = world
    w.subscribe(A)
    calls = 0

    async def send(url: str, key: bytes, event: FeedbackEvent, **kw: Any) -> Attempt:
        nonlocal calls
        calls += 1
        raise UnicodeError("encoding with 'idna' codec failed (label empty or too long)")

    w.app.send = send  # type: ignore[method-assign]
    w.feedback.on_event(_input(A, 0, wire.encode(_event(A, 1)), w.topic), now=datetime.now(UTC))
    for _ in range(10):
        await w.settle()
        await w.feedback.tick()
    await w.settle()
    state = w.feedback.load(A)
    assert state is not None and state.pending == {}
    assert calls == 3  # feedback_attempts, then given up


async def test_a_pending_event_older_than_the_age_limit_is_dropped_by_the_timer(
    world: World,
) -> None:
    w = world
    w.subscribe(A)
    hold = w.app.hold[URLS[A]] = asyncio.Event()  # an attempt that never comes back
    made = _event(A, 1)
    w.feedback.on_event(_input(A, 0, wire.encode(made), w.topic), now=datetime.now(UTC))
    await w.settle()
    state = w.feedback.load(A)
    assert state is not None and list(state.pending) == [made.id]
    w.feedback.policy = dataclasses.replace(w.feedback.policy, max_age_s=600)
    old = made.model_copy(update={"occurred_at": datetime.now(UTC) - timedelta(minutes=30)})
    entry = state.pending[made.id].model_copy(update={"event": old})
    w.feedback._store(state.model_copy(update={"pending": {made.id: entry}}))
    await w.feedback.tick()
    state = w.feedback.load(A)
    assert state is not None and state.pending == {} and made.id in state.settled
    hold.set()


@pytest.mark.parametrize("how", ["unsubscribed", "withdrew the kind", "erased"])
async def test_what_is_withdrawn_or_erased_during_the_lookup_is_not_posted(
    world: World, how: str
) -> None:
    """The subscription is read before the patient's turn and the lookup; it is asked again
    right before the POST."""
    w = world
    w.subscribe(A)
    hold = w.app.hold[URLS[A]] = asyncio.Event()
    made = _event(A, 1)
    w.feedback.on_event(_input(A, 0, wire.encode(made), w.topic), now=datetime.now(UTC))
    await w.settle()
    if how == "unsubscribed":
        w.feedback.book.apply_record(A.encode(), None)
    elif how == "withdrew the kind":
        w.subscribe(A, Kind.DEVICE_SILENT)
    else:
        w.feedback.erasing.add(A)
    hold.set()
    await w.settle()
    assert w.app.sent == [] and [e.id for _, e in w.app.refused] == [made.id]
    if how == "erased":  # the erasure drops the state itself; nothing is written meanwhile
        return
    state = w.feedback.load(A)
    assert state is not None and state.pending == {}, "dropped as withdrawn, not retried"
    assert made.id not in state.settled  # not counted as a failed attempt either


async def test_a_subscription_still_there_is_posted_to_after_the_lookup(world: World) -> None:
    w = world
    w.subscribe(A)
    hold = w.app.hold[URLS[A]] = asyncio.Event()
    made = _event(A, 1)
    w.feedback.on_event(_input(A, 0, wire.encode(made), w.topic), now=datetime.now(UTC))
    await w.settle()
    hold.set()
    await w.settle()
    assert [e.id for _, e in w.app.sent] == [made.id] and w.app.refused == []


async def test_a_deleted_subscription_tombstones_the_feedback_state(world: World) -> None:
    """DELETE /v1/me/feedback: the timer forgets what was kept for the patient (their outbox,
    arrivals, weekly tallies) and tombstones it in the changelog; another patient's stays."""
    w = world
    w.subscribe(A)
    w.subscribe(B)
    w.app.hold[URLS[A]] = asyncio.Event()  # A's event stays pending
    for patient, n in ((A, 1), (B, 2)):
        w.feedback.on_event(
            _input(patient, n, wire.encode(_event(patient, n)), w.topic), now=datetime.now(UTC)
        )
    await w.settle()
    assert w.feedback.load(A) is not None and w.feedback.load(B) is not None
    w.feedback.book.apply_record(A.encode(), None)  # the subscription's tombstone
    await w.feedback.tick()
    await w.kafka.flush()
    assert w.feedback.load(A) is None and w.feedback.load(B) is not None
    assert (w.changelog, orjson.dumps(A), None) in w.kafka.log
    withdrawn = w.alerts.metrics.feedback_events.labels(kind="finding_opened", outcome="withdrawn")
    assert withdrawn._value.get() >= 1
