"""State that survives: a processors worker SIGKILLed mid-stream and restarted.

Real Kafka, InfluxDB, ingest over HTTP and a real Faust worker. A cohort is warmed up and
one extreme reading gives one anomaly; then readings (normal ones and extreme ones of
warmed patients) stream in while the worker is killed with SIGKILL and started again with
the same app id (= consumer group) and data dir, and the stream goes on.

An extreme reading is an SpO2 of 84 %: critical at once (NEWS2 score 3), whereas a lone
heart-rate spike is taken for a motion artefact (heart rate is sampled, so it takes a second
one in a row). Findings fold into episodes (:mod:`processors.episodes`), which publish an
onset and, once the channel is back within normal, a resolution; the worker here resolves
after ``RESOLVE_AFTER_S`` of event time and two normal readings, and the stream sends a
normal SpO2 reading each round, so every extreme of a patient opens an episode of its own
and gets an anomaly of its own. Afterwards:

- the baselines came back: a patient warmed before the kill, who sent nothing since, gets
  an anomaly for their next extreme heart rates at once (on the second of two in a row),
  judged against a baseline of at least the warm-up readings (``baseline.n``), and none
  for the normal one after it;
- every stored extreme reading has its anomaly (phase ``onset``), every episode of the
  stream that had two normal readings after it its resolution, and no ``anomaly_id`` is on
  ``pghd.anomalies.v1`` twice, the replay after the kill included (the kill is asserted to
  land mid-stream: readings of the stream were uncommitted when the worker died; how many
  of them it had judged already, and judged again after the restart, is printed);
- no reading is lost: every posted reading is stored. With faust-streaming 0.15.3 as it
  is, readings posted around the restarted worker's join were, in about half the runs, never
  judged and their offsets never committed (a race between the recovery's seek and the fetch
  loop, faust-streaming #596); :mod:`pghd.faust_fixes` closes it, and
  ``test_restart_no_loss.py`` reproduces it.

Run with the memory store (the ``state`` table comes back from its changelog topic) and
with ``rocksdb://`` (a persistent data dir; RocksDB keeps it and the changelog fills the gap).

Where a SIGKILL lands is up to chance, so the narrow windows (a patient's record written
with its anomalies as intents but the sends not confirmed; a batch replayed with or without
its records written) are also set up exactly: the worker is stopped, the ``state`` changelog
and the group's offsets are edited to what such a crash leaves, and it is started again on
them.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import Popen
from typing import Any

import pytest
from kafka import KafkaProducer, TopicPartition

from deploy.local.harness import (
    Pipeline,
    commit_offsets,
    new_patient,
    reading,
    running_pipeline,
    service_env,
    wait_for,
)
from deploy.local.influxdb import InfluxServer
from deploy.local.process import log_tail, start_detached, stop_process
from deploy.local.topics import read_from_start
from pghd import topics
from pghd.contracts import Anomaly
from tests.integration.sync import (
    backlog,
    caught_up,
    end_offsets,
    judged_in,
    measurements_in,
    partition_of,
)

WARMUP = 10
NORMAL = [70, 72, 69, 71, 73, 70, 68, 71, 72, 70, 69, 71]
EXTREME_HR = 170
EXTREME_SPO2 = 84
NORMAL_SPO2 = 97
RESOLVE_AFTER_S = 60  # event time; a stream round is a minute later than the one before
STREAM_PATIENTS = 12
KILL_AFTER_ROUNDS = 38  # 8 rounds, then ~3 s of the stream on an idle machine
KILLED_FOR_S = 2.0
STREAM_AFTER_RESTART_S = 4.0


def _bin_start(*, days_ago: int) -> datetime:
    """Start of a six-hour UTC bin in the past: the awake heart-rate baseline is kept per
    bin (:mod:`processors.baseline`), so a patient's readings here stay within one."""
    day = (datetime.now(UTC) - timedelta(days=days_ago)).replace(
        hour=6, minute=0, second=0, microsecond=0
    )
    return day + timedelta(minutes=10)


class Worker:
    """One processors worker process that can be killed and started again, same config."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.process: Popen[bytes] | None = None

    def start(self) -> None:
        self.process = start_detached(
            [sys.executable, "-m", "processors.main"],
            log_file=self.log,
            env=self.env,
            die_with_parent=True,
        )

    def kill(self) -> None:
        assert self.process is not None and self.process.poll() is None, self.diagnostics()
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process.pid, timeout=20)

    def diagnostics(self) -> str:
        return log_tail(self.log, 60)


class Stream:
    """Posts a round of readings from a thread until stopped.

    Each round gives every stream patient one normal heart rate and one SpO2, a minute after
    their previous ones; the SpO2 is normal, except every 4th round for one patient, whose
    SpO2 is extreme. A patient's next extreme comes 48 rounds later, long after the two
    normal SpO2 readings that resolve the episode the previous one opened.
    """

    def __init__(self, pipeline: Pipeline, patients: list[str], start: datetime) -> None:
        self.pipeline, self.patients, self.start = pipeline, patients, start
        self.rounds = 0
        self.extremes: list[tuple[str, str]] = []  # (patient, event_id), in posting order
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.post_round()
            self._stop.wait(0.1)

    def post_round(self) -> None:
        i = self.rounds
        when = self.start + timedelta(minutes=i)
        extreme = self.patients[(i // 4) % len(self.patients)] if i % 4 == 3 else None
        body = []
        for patient in self.patients:
            body.append(
                reading(patient, 70 + i % 3, when, context="rest", event_id=f"{patient}-s{i}")
            )
            event_id = f"{patient}-o{i}"
            value = EXTREME_SPO2 if patient == extreme else NORMAL_SPO2
            body.append(spo2(patient, value, when, event_id=event_id))
            if patient == extreme:
                self.extremes.append((patient, event_id))
        response = self.pipeline.post(body)
        if response.status_code != 202:
            self.errors.append(response.text)
        self.rounds += 1


def spo2(patient: str, value: float, when: datetime, *, event_id: str) -> dict[str, object]:
    return reading(patient, value, when, metric="spo2", unit="%", context="rest", event_id=event_id)


def onsets(found: list[Anomaly]) -> list[Anomaly]:
    """The anomalies that flag a reading (an episode's onset or update), not its end."""
    return [a for a in found if a.phase in {"onset", "update"}]


@pytest.fixture
def ingest(stack_env: dict[str, str], influx: InfluxServer, tmp_path: Path) -> Iterator[Pipeline]:
    with running_pipeline(
        stack_env=stack_env, influx=influx, workdir=tmp_path / "ingest", services=("ingest",)
    ) as pipeline:
        yield pipeline


def _worker_env(
    stack_env: dict[str, str], workdir: Path, store: str, ingest_port: int
) -> dict[str, str]:
    env = service_env(
        stack_env,
        data_dir=workdir,
        sink_url="json://127.0.0.1:9/unused",
        ingest_port=ingest_port,
        app_suffix=f"restart-{uuid.uuid4().hex[:8]}",
        warmup=WARMUP,
    )
    env.update(
        {
            "PGHD_PROCESSORS_STORE": store,
            # A SIGKILLed member keeps its partitions until its session times out.
            "PGHD_PROCESSORS_SESSION_TIMEOUT_S": "8",
            "PGHD_PROCESSORS_HEARTBEAT_INTERVAL_S": "1",
            "PGHD_PROCESSORS_COMMIT_INTERVAL_S": "1",
            # Episodes end a minute (of event time) after the channel is back within normal.
            "PGHD_PROCESSORS_EPISODE_RESOLVE_AFTER_S": str(RESOLVE_AFTER_S),
        }
    )
    return env


@pytest.mark.timeout(420)
@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_sigkilled_worker_resumes_with_its_baselines_and_emits_each_anomaly_once(
    store: str, ingest: Pipeline, stack_env: dict[str, str], tmp_path: Path
) -> None:
    port = int(ingest.ingest_url.rsplit(":", 1)[1])
    env = _worker_env(stack_env, tmp_path, store, port)
    group = env["PGHD_PROCESSORS_APP_ID"]
    worker = Worker(env, tmp_path / "processors.log")
    ingest.logs["processors"] = worker.log
    start = _bin_start(days_ago=2)
    quiet = new_patient("quiet")  # warmed before the kill, silent until after the restart
    streamed = [new_patient("stream") for _ in range(STREAM_PATIENTS)]
    everyone = [quiet, *streamed]
    try:
        worker.start()
        # Warm everyone up; the quiet patient's extreme SpO2 yields exactly one anomaly.
        warm = [
            reading(p, v, start + timedelta(minutes=5 * j), context="rest", event_id=f"{p}-w{j}")
            for p in everyone
            for j, v in enumerate(NORMAL)
        ]
        first_when = start + timedelta(minutes=5 * len(NORMAL))
        first = spo2(quiet, EXTREME_SPO2, first_when, event_id=f"{quiet}-x1")
        assert ingest.post([*warm, first]).status_code == 202
        ingest.wait_vitals(quiet, len(NORMAL) + 1, timeout=120)
        (before,) = ingest.anomalies(quiet, expect=1, settle=2.0)
        assert (before.event_ids, before.channel, before.phase) == (
            [f"{quiet}-x1"],
            "spo2",
            "onset",
        )

        # Stream; SIGKILL the worker mid-stream, start it again, keep streaming.
        stream_start = first_when + timedelta(minutes=5)
        bootstrap = ingest.kafka_bootstrap
        streamed_from = end_offsets(bootstrap, topics.MEASUREMENTS)
        points_from = end_offsets(bootstrap, topics.POINTS)
        with Stream(ingest, streamed, stream_start) as stream:
            wait_for(
                lambda: stream.rounds >= KILL_AFTER_ROUNDS or None,
                timeout=120,
                what=f"{KILL_AFTER_ROUNDS} stream rounds posted",
            )
            # Right after a post returned: its readings are in Kafka, not yet committed.
            so_far = stream.rounds
            wait_for(lambda: stream.rounds > so_far or None, timeout=60, what="one more post")
            worker.kill()
            killed = time.monotonic()
            killed_at_round = stream.rounds
            # What the dead worker left: offsets it had not committed, points it had produced.
            at_kill = backlog(bootstrap, group)
            points_at_kill = end_offsets(bootstrap, topics.POINTS)
            time.sleep(max(0.0, KILLED_FOR_S - (time.monotonic() - killed)))
            worker.start()
            time.sleep(STREAM_AFTER_RESTART_S)
        assert not stream.errors, stream.errors[:3]
        assert stream.rounds > killed_at_round, "the stream must go on after the kill"
        in_flight = {
            m.event_id
            for m in measurements_in(
                bootstrap,
                {p: (max(done, streamed_from[p]), end) for p, (done, end) in at_kill.items()},
            )
        }
        assert in_flight, "the race was not hit: no streamed reading was uncommitted at the kill"
        judged = judged_in(
            bootstrap, {p: (points_from[p], points_at_kill[p]) for p in points_at_kill}
        )
        replayed = in_flight & judged  # often none: the worker commits right after a batch
        print(
            f"\nat the kill: {len(in_flight)} streamed readings uncommitted, {len(replayed)} of"
            f" them already judged (judged again after the restart), extremes among them:"
            f" {sorted(replayed & {e for _, e in stream.extremes})}"
        )

        # The restarted worker works through what was posted.
        posted = {f"{p}-w{j}" for p in streamed for j in range(len(NORMAL))}
        posted |= {
            f"{p}-{kind}{i}" for p in streamed for i in range(stream.rounds) for kind in "so"
        }
        stored = _stored_settled(ingest, streamed, posted=posted)

        # Then the quiet patient: two extreme heart rates in a row (a lone one is taken for
        # a motion artefact), one normal one, no new warm-up.
        later = first_when + timedelta(minutes=5)
        tail = [
            reading(quiet, EXTREME_HR, when, context="rest", event_id=f"{quiet}-{name}")
            for name, when in (("x2", later), ("x3", later + timedelta(minutes=5)))
        ]
        tail.append(
            reading(
                quiet, 71, later + timedelta(minutes=10), context="rest", event_id=f"{quiet}-n2"
            )
        )
        assert ingest.post(tail).status_code == 202
        ingest.wait_vitals(quiet, len(NORMAL) + 4, timeout=120)
        # Everything judged (offsets committed to the end): no anomaly is still to come.
        caught_up(ingest.kafka_bootstrap, group, what=worker.diagnostics())
        quiet_anomalies = ingest.anomalies(quiet, expect=2, settle=1.0)
        # No SpO2 came since x1, so its episode is still open: the heart rate joins it, as
        # a new problem announced (an update of the same episode).
        assert sorted((a.event_ids[0], a.channel, a.phase) for a in quiet_anomalies) == [
            (f"{quiet}-x1", "spo2", "onset"),
            (f"{quiet}-x3", "heart_rate", "update"),
        ], quiet_anomalies
        assert len({a.episode_id for a in quiet_anomalies}) == 1
        (after,) = [a for a in quiet_anomalies if a.event_ids == [f"{quiet}-x3"]]
        assert after.baseline is not None, "the baseline did not survive the restart"
        assert after.baseline.n >= len(NORMAL), after.baseline
        assert after.baseline.mean == pytest.approx(70.5, abs=2)

        # Each anomaly on the topic once; each stored extreme reading has its anomaly, and
        # each episode its resolution once two normal SpO2 readings (a minute apart) came.
        lost = sorted(posted - stored)
        assert not lost, f"{len(lost)} readings not stored after the SIGKILL: {lost}"
        extremes = {event_id for _, event_id in stream.extremes if event_id in stored}
        resolving = {
            (patient, f"{patient}-o{int(event_id.rsplit('-o', 1)[1]) + 2}")
            for patient, event_id in stream.extremes
        }
        resolving = {(p, e) for p, e in resolving if e in stored}
        assert resolving, "no extreme of the stream was followed by two normal readings"
        found: list[Anomaly] = []
        for patient in streamed:
            expected = sum(1 for p, e in stream.extremes if p == patient and e in extremes)
            expected += sum(1 for p, _ in resolving if p == patient)
            found += ingest.anomalies(patient, expect=expected, settle=0.5)
        ids = collections.Counter(a.anomaly_id for a in [*found, *quiet_anomalies])
        assert [i for i, n in ids.items() if n > 1] == [], "anomalies re-emitted"
        flagged = onsets(found)
        assert {a.channel for a in flagged} == {"spo2"}, flagged
        assert extremes <= {a.event_ids[0] for a in flagged} <= {e for _, e in stream.extremes}
        ended = [a for a in found if a not in flagged]
        assert {(a.channel, a.phase, a.detector) for a in ended} <= {
            ("spo2", "resolved", "episode")
        }
        assert sorted((a.patient_id, a.event_ids[0]) for a in ended) == sorted(resolving)
        assert {a.episode_id for a in ended} <= {a.episode_id for a in flagged}
        again = collections.Counter(p for p, _ in stream.extremes)
        print(
            f"{stream.rounds} stream rounds: {len(flagged)} onsets, {len(ended)} resolutions,"
            f" {sum(1 for n in again.values() if n > 1)} patients with a second episode"
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{worker.diagnostics()}") from exc
    finally:
        worker.stop()


def _stored_settled(pipeline: Pipeline, patients: list[str], *, posted: set[str]) -> set[str]:
    """Event ids of the patients' stored vitals, once every ``posted`` one is there (or after
    150 s: the caller reports what is missing)."""
    deadline = time.monotonic() + 150
    while True:
        stored = {str(row["event_id"]) for p in patients for row in pipeline.vitals(p)}
        if posted <= stored or time.monotonic() > deadline:
            return stored
        time.sleep(1.0)


def _state_values(bootstrap: str, app_id: str, patient: str) -> list[dict[str, Any]]:
    """The records the ``state`` changelog holds for ``patient``, oldest first."""
    return [
        json.loads(value)
        for key, value in read_from_start(bootstrap, f"{app_id}-state-changelog")
        if key == patient.encode() and value is not None
    ]


def _write_state(bootstrap: str, app_id: str, records: dict[str, dict[str, Any]]) -> None:
    """Write patient records to the ``state`` changelog, on the partition of the patient's
    readings, as the worker does (raw key, JSON value)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for patient, record in records.items():
            producer.send(
                f"{app_id}-state-changelog",
                key=patient.encode(),
                value=json.dumps(record).encode(),
                partition=partition_of(patient),
            )
        producer.flush(timeout=30)
    finally:
        producer.close()


@pytest.mark.timeout(300)
def test_restart_after_a_crash_between_the_state_write_and_the_sends_sends_each_anomaly_once(
    ingest: Pipeline, stack_env: dict[str, str], tmp_path: Path
) -> None:
    """A batch writes each patient's record with the anomalies it is about to send listed as
    *intents*, sends them, and writes the record again without them. A crash between those
    writes leaves the intents; on restart each is looked up on the topic and sent only if
    it is not there, without waiting for the patient's next reading.

    The crash is set up exactly: the worker is stopped and each patient's latest record is
    written back with intents, as the crash leaves it:

    - ``on_topic``: its anomaly went out before the crash -> found, not sent again;
    - ``lost``: its anomaly never went out (here: an intent under an id the topic does not
      hold) -> sent now, once.
    """
    port = int(ingest.ingest_url.rsplit(":", 1)[1])
    env = _worker_env(stack_env, tmp_path, "memory://", port)
    app_id = env["PGHD_PROCESSORS_APP_ID"]
    bootstrap = ingest.kafka_bootstrap
    worker = Worker(env, tmp_path / "processors.log")
    ingest.logs["processors"] = worker.log
    start = _bin_start(days_ago=1)
    on_topic, lost = new_patient("ontopic"), new_patient("lost")
    extreme_at = start + timedelta(minutes=5 * len(NORMAL))

    try:
        worker.start()
        warm = [
            reading(p, v, start + timedelta(minutes=5 * j), context="rest", event_id=f"{p}-w{j}")
            for p in (on_topic, lost)
            for j, v in enumerate(NORMAL)
        ]
        extremes = [spo2(p, EXTREME_SPO2, extreme_at, event_id=f"{p}-x") for p in (on_topic, lost)]
        assert ingest.post([*warm, *extremes]).status_code == 202
        sent: dict[str, Anomaly] = {}
        for patient in (on_topic, lost):
            # The worker was just started: the wait covers its start-up (topics, group join,
            # recovery), which a loaded machine stretches beyond a minute.
            (sent[patient],) = ingest.anomalies(patient, expect=1, settle=1.0, timeout=180)
        caught_up(bootstrap, app_id, what=worker.diagnostics())
        worker.stop()

        never_sent = sent[lost].model_copy(update={"anomaly_id": uuid.uuid4().hex})
        intent_ms = int(time.time() * 1000)
        crashed = {}
        for patient, anomaly in ((on_topic, sent[on_topic]), (lost, never_sent)):
            *_, record = _state_values(bootstrap, app_id, patient)
            assert "intents" not in record, "the intents were not cleared after the send"
            record["intents"] = {"at": intent_ms, "anomalies": [anomaly.model_dump_json()]}
            crashed[patient] = record
        _write_state(bootstrap, app_id, crashed)

        worker.start()
        found = ingest.anomalies(lost, expect=2, settle=1.0, timeout=180)
        assert sorted(a.anomaly_id for a in found) == sorted(
            [sent[lost].anomaly_id, never_sent.anomaly_id]
        )
        assert [a.anomaly_id for a in ingest.anomalies(on_topic, expect=1, settle=2.0)] == [
            sent[on_topic].anomaly_id
        ]
        log = worker.log.read_text()
        assert "2 anomalies had an unconfirmed send, 1 of them are on" in log
        for patient in (on_topic, lost):  # written again, without the intents
            *_, record = _state_values(bootstrap, app_id, patient)
            assert "intents" not in record, patient
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{worker.diagnostics()}") from exc
    finally:
        worker.stop()


@pytest.mark.timeout(300)
def test_a_replayed_batch_counts_each_reading_once_whether_or_not_its_record_was_written(
    ingest: Pipeline, stack_env: dict[str, str], tmp_path: Path
) -> None:
    """A crash before the offsets commit replays the batch. Each patient's record is one
    message, written whole or not at all, and says how far it reaches (``through``).

    Each patient here has an SpO2 episode open (an extreme) and sent one normal reading
    (``n1``); the episode resolves on the second normal one, a minute later (``n2``). The
    crash is set up exactly: the worker is stopped, the group's offsets are put back before
    ``n1`` (so ``n1`` is replayed, the same Kafka message), and:

    - ``ahead``: the record written with ``n1`` is kept (skipping ``n1`` by its position;
      judging it again would count it twice);
    - ``behind``: the record is put back to the one before ``n1``, as a crash before the
      record was written leaves it (``n1`` must be judged again, or the end comes late).

    Either way the episode ends on ``n2``, with one resolution.
    """
    port = int(ingest.ingest_url.rsplit(":", 1)[1])
    env = _worker_env(stack_env, tmp_path, "memory://", port)
    app_id = env["PGHD_PROCESSORS_APP_ID"]
    bootstrap = ingest.kafka_bootstrap
    worker = Worker(env, tmp_path / "processors.log")
    ingest.logs["processors"] = worker.log
    start = _bin_start(days_ago=1)
    ahead, behind = new_patient("ahead"), new_patient("behind")
    extreme_at = start + timedelta(minutes=5 * len(NORMAL))

    def normal(patient: str, n: int) -> dict[str, object]:
        when = extreme_at + timedelta(minutes=n)
        return spo2(patient, NORMAL_SPO2, when, event_id=f"{patient}-n{n}")

    try:
        worker.start()
        warm = [
            reading(p, v, start + timedelta(minutes=5 * j), context="rest", event_id=f"{p}-w{j}")
            for p in (ahead, behind)
            for j, v in enumerate(NORMAL)
        ]
        extremes = [spo2(p, EXTREME_SPO2, extreme_at, event_id=f"{p}-x") for p in (ahead, behind)]
        assert ingest.post([*warm, *extremes]).status_code == 202
        for patient in (ahead, behind):
            found = ingest.anomalies(patient, expect=1, settle=0.5, timeout=180)
            assert [(a.event_ids, a.phase) for a in found] == [([f"{patient}-x"], "onset")]
        caught_up(bootstrap, app_id, what=worker.diagnostics())
        before_n1 = end_offsets(bootstrap, topics.MEASUREMENTS)
        assert ingest.post([normal(ahead, 1), normal(behind, 1)]).status_code == 202
        caught_up(bootstrap, app_id, what=worker.diagnostics())
        worker.stop()

        # The crash: n1 replayed; "behind" loses the record n1's batch wrote.
        *_, before, after = _state_values(bootstrap, app_id, behind)
        assert before["patient"] != after["patient"], "n1 did not change the patient's state"
        _write_state(bootstrap, app_id, {behind: before})
        parts = {partition_of(p) for p in (ahead, behind)}
        # As a crash before the offsets were committed leaves them: n1 is read again.
        commit_offsets(
            bootstrap, app_id, {TopicPartition(topics.MEASUREMENTS, p): before_n1[p] for p in parts}
        )

        worker.start()
        assert ingest.post([normal(ahead, 2), normal(behind, 2)]).status_code == 202
        caught_up(bootstrap, app_id, timeout=180, what=worker.diagnostics())
        for patient in (ahead, behind):
            found = ingest.anomalies(patient, expect=2, settle=1.0)
            assert [(a.event_ids, a.phase) for a in found] == [
                ([f"{patient}-x"], "onset"),
                ([f"{patient}-n2"], "resolved"),
            ], (patient, found)
            # n1 and n2, each counted once (n1 twice would read "3 readings")
            assert "(2 readings)" in found[1].explanation, (patient, found[1].explanation)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{worker.diagnostics()}") from exc
    finally:
        worker.stop()
