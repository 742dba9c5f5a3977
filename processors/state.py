"""One record per patient: everything judging remembers, written once per batch (pure).

The processors keep a patient's whole state in one record of the ``state`` table (key = the
patient id), so a batch writes one record per patient it touched, whatever it held:

- ``patient``: the :class:`~processors.patient_state.PatientState` (steps and sleep
  timelines, the open episode, provisional findings, recent and nightly heart rates) with
  ``through``, the Kafka position of the last reading the record holds;
- ``baselines``: the patient's channel baselines (:class:`~processors.baseline.BaselineState`
  by state key, :func:`processors.judge.state_keys`);
- ``news2``: the latest NEWS2 vitals (:class:`~processors.detectors.news2_aggregate.News2State`);
- ``dedup``: the digests of the readings judged recently (below);
- ``intents``: anomalies this record's batch emitted and whose delivery to
  ``pghd.anomalies.v1`` was not yet confirmed (:mod:`processors.outbox`).

A record is one Kafka message, so a crash leaves each patient either wholly before or
wholly after a batch: the reading positions, the baselines and the dedup digests can no
longer disagree the way four tables written one after another could.

**Dedup digests.** A reading's identity (patient, source vendor and device, ``event_id``:
:func:`processors.dedup.reading_identity`) is kept as an 8-byte BLAKE2b digest. The record
holds the digests since the last seal (at most :data:`SEAL_AT`); when it reaches that, they
move to a *sealed bucket*, a record of their own in the same table (key
``<patient>|dedup|<n>``, same partition), and the patient's record keeps only the bucket's
number and the time of its newest digest. So the record written per batch stays small
however many readings a patient sends in the window, and a bucket is deleted (a tombstone)
once its newest digest is older than the window (``dedup_window_s``): a digest is held for
the window and at most one bucket's span longer.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from pghd.contracts import Measurement
from processors.baseline import BaselineState
from processors.dedup import reading_identity
from processors.detectors.news2_aggregate import News2State
from processors.patient_state import PatientState

__all__ = [
    "DIGEST_BYTES",
    "SEAL_AT",
    "Bucket",
    "PatientRecord",
    "bucket_key",
    "bucket_partition",
    "decode_bucket",
    "decode_record",
    "digest",
    "encode_bucket",
    "encode_record",
    "is_bucket_key",
    "record_partition",
]

VERSION = 1
DIGEST_BYTES = 8
#: Digests a record holds before they move to a sealed bucket.
SEAL_AT = 256
BUCKET_MARK = "|dedup|"


def digest(reading: Measurement) -> bytes:
    """The 8-byte digest of a reading's identity (patient, vendor, device, event id)."""
    identity = reading_identity(reading).encode()
    return hashlib.blake2b(identity, digest_size=DIGEST_BYTES).digest()


def bucket_key(patient_id: str, number: int) -> str:
    """The table key of sealed bucket ``number`` of ``patient_id``."""
    return f"{patient_id}{BUCKET_MARK}{number}"


def is_bucket_key(key: str) -> bool:
    """Whether a table key names a sealed bucket (patient ids cannot hold ``|``)."""
    return BUCKET_MARK in key


def _pack(ids: Iterable[bytes]) -> str:
    return base64.b64encode(b"".join(ids)).decode("ascii")


def _unpack(text: str) -> list[bytes]:
    raw = base64.b64decode(text)
    return [raw[i : i + DIGEST_BYTES] for i in range(0, len(raw), DIGEST_BYTES)]


@dataclass
class Bucket:
    """A sealed set of digests and the time (ms) the newest of them was judged."""

    last_ms: int
    ids: list[bytes]


def encode_bucket(bucket: Bucket, *, partition: int) -> bytes:
    """A sealed bucket as stored, with the partition it lives in (for its deletion)."""
    return json.dumps({"last": bucket.last_ms, "p": partition, "ids": _pack(bucket.ids)}).encode()


def decode_bucket(raw: bytes) -> Bucket:
    data = json.loads(raw)
    return Bucket(last_ms=int(data["last"]), ids=_unpack(str(data["ids"])))


def bucket_partition(raw: bytes) -> tuple[int, int]:
    """``(when its newest digest was judged (ms), partition)`` of a stored bucket."""
    data = json.loads(raw)
    return int(data["last"]), int(data["p"])


@dataclass
class PatientRecord:
    """One patient's state as the processors hold it between batches."""

    patient: PatientState = field(default_factory=PatientState)
    baselines: dict[str, BaselineState] = field(default_factory=dict)
    news2: News2State | None = None
    recent: list[bytes] = field(default_factory=list)
    """Digests judged since the last seal, oldest first."""
    recent_last_ms: int = 0
    """When the newest of ``recent`` was judged (ms)."""
    sealed: dict[int, int] = field(default_factory=dict)
    """Sealed bucket number -> when its newest digest was judged (ms)."""
    intents: list[str] = field(default_factory=list)
    """Anomalies (wire JSON) emitted but not yet confirmed on the anomalies topic."""
    intent_ms: int = 0
    """When those intents were written (ms): where a check of the topic starts."""
    known: set[bytes] = field(default_factory=set, repr=False, compare=False)
    """Every digest still held (``recent`` and the sealed buckets): a cache, filled when
    the record is loaded with its buckets (:meth:`remember_bucket`)."""

    def is_known(self, reading_digest: bytes) -> bool:
        return reading_digest in self.known

    def remember_bucket(self, bucket: Bucket) -> None:
        """Add a sealed bucket's digests to :attr:`known` (after loading it)."""
        self.known.update(bucket.ids)

    def remember(self, digests: Iterable[bytes], *, now_ms: int) -> dict[int, Bucket]:
        """Record newly judged digests; return the buckets to write (sealed now)."""
        added = [d for d in digests if d not in self.known]
        if not added:
            return {}
        self.recent.extend(added)
        self.known.update(added)
        self.recent_last_ms = now_ms
        if len(self.recent) < SEAL_AT:
            return {}
        number = max(self.sealed, default=-1) + 1
        self.sealed[number] = now_ms
        bucket = Bucket(last_ms=now_ms, ids=self.recent)
        self.recent = []
        return {number: bucket}

    def expire(self, *, now_ms: int, window_ms: int) -> list[int]:
        """Forget digests older than the window; return the sealed buckets to delete.

        (Their digests stay in :attr:`known` until the record is loaded afresh; a repeat
        is still dropped then, which only errs towards the window's side.)
        """
        old = [n for n, last in self.sealed.items() if now_ms - last >= window_ms]
        for number in old:
            del self.sealed[number]
        if self.recent and now_ms - self.recent_last_ms >= window_ms:
            self.known.difference_update(self.recent)
            self.recent = []
        return old


def encode_record(record: PatientRecord, *, partition: int) -> bytes:
    """The record as stored (JSON), with the partition it lives in."""
    data: dict[str, Any] = {
        "v": VERSION,
        "p": partition,
        "patient": record.patient.to_dict(),
        "baselines": {key: state.to_dict() for key, state in record.baselines.items()},
        "news2": None if record.news2 is None else record.news2.to_dict(),
        "dedup": {
            "recent": _pack(record.recent),
            "last": record.recent_last_ms,
            "sealed": {str(n): last for n, last in record.sealed.items()},
        },
    }
    if record.intents:
        data["intents"] = {"at": record.intent_ms, "anomalies": record.intents}
    return orjson.dumps(data)


def record_partition(raw: bytes) -> int | None:
    """The partition a stored record names (None: unreadable)."""
    try:
        value = orjson.loads(raw).get("p")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def decode_record(raw: bytes | str | Mapping[str, Any]) -> PatientRecord:
    """A stored record (raises ``ValueError``, ``KeyError`` or ``TypeError`` when it is not
    one); :attr:`PatientRecord.known` holds ``recent`` only until buckets are added."""
    data = raw if isinstance(raw, Mapping) else orjson.loads(raw)
    if data.get("v") != VERSION:
        raise ValueError(f"state record version {data.get('v')!r} is not {VERSION}")
    dedup = data.get("dedup") or {}
    intents = data.get("intents") or {}
    news2 = data.get("news2")
    record = PatientRecord(
        patient=PatientState.from_dict(data["patient"]),
        baselines={k: BaselineState.from_dict(v) for k, v in data["baselines"].items()},
        news2=None if news2 is None else News2State.from_dict(news2),
        recent=_unpack(str(dedup.get("recent", ""))),
        recent_last_ms=int(dedup.get("last", 0)),
        sealed={int(n): int(last) for n, last in (dedup.get("sealed") or {}).items()},
        intents=[str(a) for a in intents.get("anomalies", [])],
        intent_ms=int(intents.get("at", 0)),
    )
    record.known = set(record.recent)
    return record
