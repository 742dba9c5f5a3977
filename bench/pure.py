"""In-process figures: judging throughput and the size of baseline state, no Kafka.

Both run on a realistic mixed cohort from :mod:`pghd.simulation` (circadian heart rate,
steps, spot checks of temperature, SpO2, blood pressure, glucose, sleep, episodes),
canonicalized as ingest does it, beside a deliberately bare baseline measured on the same
readings in the same run.
"""

from __future__ import annotations

import base64
import gc
import json
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from faust.serializers import codecs

from pghd.contracts import Measurement
from pghd.readings import ReadingIn, ReadingRejected, canonicalize
from pghd.simulation import generate_cohort
from processors.baseline import BaselineState
from processors.detectors.news2_aggregate import News2State
from processors.judge import JudgeParams
from processors.judging import judge
from processors.patient_state import PatientState
from processors.state import PatientRecord, bucket_key, digest, encode_bucket

__all__ = [
    "StateSizes",
    "cohort_measurements",
    "dedup_sizes",
    "judge_rate",
    "state_sizes",
    "welford_rate",
]

Welford = tuple[float, float, float]  # (n, mean, M2): the bare running mean and variance


def cohort_measurements(*, patients: int, days: float, seed: int = 7) -> list[Measurement]:
    """The cohort's readings in arrival order, canonicalized as received at their arrival
    (rejected ones left out)."""
    cohort = generate_cohort(patients=patients, days=days, end=datetime.now(UTC), seed=seed)
    out = []
    for arrived, raw in cohort.arrivals():
        try:
            reading = ReadingIn.model_validate(raw)
            out.append(canonicalize(reading, vendor="bench", received_at=arrived))
        except ReadingRejected:
            continue
    return out


def _batches(readings: Sequence[Measurement], size: int) -> list[Sequence[Measurement]]:
    return [readings[i : i + size] for i in range(0, len(readings), size)]


def _timed(
    batches: list[Sequence[Measurement]], step: Callable[[Sequence[Measurement]], None]
) -> float:
    """Readings/s of ``step`` over ``batches``, single-threaded, GC as in production."""
    count = sum(len(b) for b in batches)
    began = time.perf_counter()
    for batch in batches:
        step(batch)
    return count / (time.perf_counter() - began)


def judge_rate(
    readings: Sequence[Measurement], *, params: JudgeParams, batch: int = 500
) -> tuple[float, dict[str, BaselineState]]:
    """Readings/s through :func:`~processors.judging.judge` (context, baselines, detectors,
    episodes) in batches of ``batch``, the states carried from batch to batch as the agent
    carries them; also the final baseline states."""
    states: dict[str, BaselineState] = {}
    news2: dict[str, News2State] = {}
    patients: dict[str, PatientState] = {}
    now = datetime.now(UTC)

    def step(chunk: Sequence[Measurement]) -> None:
        out = judge(states, chunk, params=params, now=now, news2_states=news2, patients=patients)
        states.update(out.states)
        news2.update(out.news2)
        patients.update(out.patients)

    return _timed(_batches(readings, batch), step), states


def welford_rate(
    readings: Sequence[Measurement], *, batch: int = 500
) -> tuple[float, dict[str, Welford]]:
    """Readings/s of the bare baseline: per channel of each reading, one running mean and
    variance update (Welford) in a dict of 3-float tuples keyed ``patient|channel``."""
    states: dict[str, Welford] = {}

    def step(chunk: Sequence[Measurement]) -> None:
        for reading in chunk:
            for channel, value in reading.channels():
                key = f"{reading.patient_id}|{channel}"
                n, mean, m2 = states.get(key, (0.0, 0.0, 0.0))
                n += 1
                delta = value - mean
                mean += delta / n
                states[key] = (n, mean, m2 + delta * (value - mean))

    return _timed(_batches(readings, batch), step), states


@dataclass(frozen=True)
class StateSizes:
    """Bytes of baseline state per patient-channel: as stored and in process."""

    patient_channels: int
    entries: int  # table entries (a channel keeps one per context bucket)
    json_bytes: float  # value as the Faust table stores it (JSON), per patient-channel
    json_bytes_per_entry: float
    memory_bytes: float  # tracemalloc, per patient-channel
    base_json_bytes: float  # the bare 3-float tuple, JSON, per patient-channel
    base_memory_bytes: float


def _traced_bytes(make: Callable[[], list[object]]) -> tuple[int, list[object]]:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        made = make()
        return tracemalloc.get_traced_memory()[0] - before, made
    finally:
        tracemalloc.stop()


def state_sizes(states: dict[str, BaselineState], base: dict[str, Welford]) -> StateSizes:
    """Sizes of the judged cohort's states beside the bare tuples of the same
    patient-channels (those the judge keeps state for: not steps, for instance).

    Stored size: ``len`` of each value encoded with Faust's ``json`` codec (what the table
    writes to its changelog and RocksDB; keys not counted). In-process size: memory
    ``tracemalloc`` sees still allocated after every state is rebuilt from its stored
    bytes (the object and what it references: floats, the datetime, tuples), over the
    number of patient-channels; the list holding them is counted for both (8 bytes each).
    """
    # Keys are patient|channel|bucket; the bare baseline keeps one per patient|channel.
    patient_channels = {"|".join(key.split("|")[:2]) for key in states}
    ours = [codecs.dumps("json", state.to_dict()) for state in states.values()]
    base = {key: value for key, value in base.items() if key in patient_channels}
    base_encoded = [json.dumps(value, separators=(",", ":")).encode() for value in base.values()]

    # Rebuilt from the stored bytes, as a worker restoring its table does: what stays
    # allocated is each object and everything only it references.
    ours_mem, kept = _traced_bytes(lambda: [BaselineState.from_dict(json.loads(b)) for b in ours])
    base_mem, kept_base = _traced_bytes(lambda: [tuple(json.loads(b)) for b in base_encoded])
    del kept, kept_base
    ours_json = sum(len(b) for b in ours)
    base_json = sum(len(b) for b in base_encoded)
    n, nb = len(patient_channels), len(base)
    return StateSizes(
        patient_channels=n,
        entries=len(states),
        json_bytes=ours_json / n,
        json_bytes_per_entry=ours_json / len(states),
        memory_bytes=ours_mem / n,
        base_json_bytes=base_json / nb,
        base_memory_bytes=base_mem / nb,
    )


@dataclass(frozen=True)
class DedupSizes:
    """Bytes of dedup state per patient, bounded by the window and unbounded."""

    patients: int
    entries_per_patient: float  # entries held at the end (readings of the last window)
    bytes_per_patient: float  # digests in the record and its sealed buckets, as stored
    unbounded_bytes_per_patient: float  # the old table: bare event id -> true, never deleted


def dedup_sizes(readings: Sequence[Measurement], *, window_s: float) -> DedupSizes:
    """Dedup state per patient at the end of ``readings`` (judged at their own time): the
    digests of the last ``window_s`` as the state record and its sealed buckets store them
    (:mod:`processors.state`), beside an unbounded table of ``event_id -> true``."""
    end = max(r.effective_time for r in readings)
    held = [r for r in readings if (end - r.effective_time).total_seconds() < window_s]
    patients = {r.patient_id for r in readings}

    def size(key: str, value: object) -> int:
        return len(codecs.dumps("json", key)) + len(codecs.dumps("json", value))

    ours = 0
    records: dict[str, PatientRecord] = {}
    for r in sorted(held, key=lambda r: r.effective_time):
        record = records.setdefault(r.patient_id, PatientRecord())
        now_ms = int(r.effective_time.timestamp() * 1000)
        for number, bucket in record.remember([digest(r)], now_ms=now_ms).items():
            ours += len(bucket_key(r.patient_id, number)) + len(encode_bucket(bucket, partition=7))
    for record in records.values():  # what the record itself holds: recent + bucket list
        ours += len(base64.b64encode(b"".join(record.recent)))
        ours += len(json.dumps({str(n): last for n, last in record.sealed.items()}))
    unbounded = sum(size(r.event_id, True) for r in readings)
    return DedupSizes(
        patients=len(patients),
        entries_per_patient=len(held) / len(patients),
        bytes_per_patient=ours / len(patients),
        unbounded_bytes_per_patient=unbounded / len(patients),
    )
