"""The per-patient state record: everything in one message, dedup digests bounded."""

from __future__ import annotations

import pytest

from pghd import wire
from processors.baseline import BaselineState
from processors.patient_state import PatientState
from processors.state import (
    SEAL_AT,
    PatientRecord,
    bucket_key,
    bucket_partition,
    decode_bucket,
    decode_record,
    encode_bucket,
    encode_record,
    is_bucket_key,
    record_partition,
)

from .conftest import MakeReading

DAY_MS = 86_400_000
NOW_MS = 1_780_000_000_000


def _ids(n: int, start: int = 0) -> list[bytes]:
    return [i.to_bytes(8, "big") for i in range(start, start + n)]


def test_a_record_comes_back_as_it_was_written(make_reading: MakeReading) -> None:
    record = PatientRecord(patient=PatientState(through=(2, 41)))
    record.baselines["p-1|heart_rate|rest"] = BaselineState()
    record.remember(_ids(3), now_ms=NOW_MS)
    record.sealed[4] = NOW_MS - 5
    anomaly = make_reading(60.0)  # any wire model will do for the payload round trip
    record.intents = [wire.encode(anomaly).decode()]
    record.intent_ms = NOW_MS
    raw = encode_record(record, partition=2)
    back = decode_record(raw)
    assert back.patient.through == (2, 41)
    assert set(back.baselines) == {"p-1|heart_rate|rest"}
    assert back.recent == _ids(3) and back.recent_last_ms == NOW_MS
    assert back.sealed == {4: NOW_MS - 5}
    assert back.intents == record.intents and back.intent_ms == NOW_MS
    assert back.is_known(_ids(1)[0]) and not back.is_known(_ids(1, 99)[0])
    assert record_partition(raw) == 2
    assert b"intents" not in encode_record(PatientRecord(), partition=0)


def test_an_unknown_version_is_refused() -> None:
    with pytest.raises(ValueError, match="version"):
        decode_record(b'{"v": 99, "patient": {}, "baselines": {}}')


def test_digests_seal_into_a_bucket_so_the_record_stays_small() -> None:
    record = PatientRecord()
    assert record.remember(_ids(SEAL_AT - 1), now_ms=NOW_MS) == {}
    sealed = record.remember(_ids(3, SEAL_AT - 1), now_ms=NOW_MS + 1)
    assert list(sealed) == [0]
    assert len(sealed[0].ids) == SEAL_AT + 2 and record.recent == []  # the batch stays whole
    assert record.sealed == {0: NOW_MS + 1}
    # the record names the bucket; its digests live in the bucket's own entry
    assert len(encode_record(record, partition=0)) < 600
    raw = encode_bucket(sealed[0], partition=5)
    assert decode_bucket(raw).ids == sealed[0].ids
    assert bucket_partition(raw) == (NOW_MS + 1, 5)
    # a digest seen again is not recorded twice
    assert record.remember(_ids(1), now_ms=NOW_MS + 2) == {}
    assert record.recent == []


def test_a_loaded_record_knows_its_buckets_digests() -> None:
    record = PatientRecord()
    sealed = record.remember(_ids(SEAL_AT), now_ms=NOW_MS)
    back = decode_record(encode_record(record, partition=0))
    assert not back.is_known(_ids(1)[0])
    back.remember_bucket(decode_bucket(encode_bucket(sealed[0], partition=0)))
    assert back.is_known(_ids(1)[0])


def test_buckets_and_recent_digests_expire_after_the_window() -> None:
    window = 3 * DAY_MS
    record = PatientRecord()
    record.remember(_ids(SEAL_AT), now_ms=NOW_MS)
    record.remember(_ids(2, 1000), now_ms=NOW_MS + DAY_MS)
    assert record.expire(now_ms=NOW_MS + window - 1, window_ms=window) == []
    assert record.expire(now_ms=NOW_MS + window, window_ms=window) == [0]
    assert record.sealed == {} and len(record.recent) == 2
    assert record.expire(now_ms=NOW_MS + DAY_MS + window, window_ms=window) == []
    assert record.recent == [] and not record.is_known(_ids(1, 1000)[0])


def test_bucket_keys_are_told_from_patient_ids() -> None:
    assert is_bucket_key(bucket_key("p-1", 3))
    assert not is_bucket_key("p-1")
    assert bucket_key("p-1", 3).startswith("p-1|")
