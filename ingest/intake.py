"""The one path every format takes into Kafka: candidates in, accepted measurements out.

Format adapters (``ingest/adapters/*``) are pure: they turn a posted document into
:class:`Candidate` items, each either a reading in :class:`~pghd.readings.ReadingIn` shape
(with a pointer to where it came from in the document) or the errors that stopped it.
:func:`triage` validates and canonicalises each one and asks the :class:`Registry`
(enrollment and consent) whether it may be stored; :func:`produce` sends the good ones
to ``pghd.measurements.v1`` (through a :class:`ReadingsGateway`) and returns only once
Kafka acknowledged every one of them.
Routes decide how to answer (JSON results, a FHIR OperationOutcome, a DLQ record).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from ingest.metrics import IngestMetrics
from pghd.catalogue import Metric
from pghd.contracts import SCHEMA_VERSION, Measurement
from pghd.envelope import ENVELOPE_VERSION, encode_readings
from pghd.readings import ReadingIn, ReadingRejected, canonicalize
from pghd.service.producer import (
    Gateway,
    KafkaGateway,
    KafkaUnavailable,
    Record,
    kafka_unavailable,
)
from pghd.topics import MEASUREMENTS

__all__ = [
    "AllowAll",
    "Candidate",
    "ItemOutcome",
    "ReadingsGateway",
    "Registry",
    "error",
    "pointer_of",
    "produce",
    "triage",
]

logger = logging.getLogger(__name__)

_REASONS = {
    "unit": "unit",
    "effective_time": "time",
    "effective_end": "time",
    "effective_precision": "time",
}


class ReadingsGateway(KafkaGateway):
    """The gateway to ``pghd.measurements.v1``: it writes readings in ``envelope`` (one
    record per patient and request, ``v2``, or one per reading, ``v1``: :mod:`pghd.envelope`)
    and its records' ``schema_version`` header says which."""

    def __init__(
        self, *, bootstrap: str, envelope: Literal["v1", "v2"] = "v2", **options: Any
    ) -> None:
        """``options``: those of :class:`~pghd.service.producer.KafkaGateway`."""
        version = ENVELOPE_VERSION if envelope == "v2" else SCHEMA_VERSION
        super().__init__(
            bootstrap=bootstrap,
            topic=MEASUREMENTS,
            client_id="pghd-ingest",
            schema_version=version,
            **options,
        )
        self.envelope: Literal["v1", "v2"] = envelope
        """How readings are written to the topic."""


class Registry(Protocol):
    """Enrollment and consent, as ingest sees them (``ingest/enrollment`` implements it)."""

    def patient_for(self, *, source: str, account: str) -> str | None:
        """The patient a vendor account or device id of ``source`` is linked to, if any."""
        ...

    def refusal(self, *, patient_id: str, metric: Metric) -> str | None:
        """Why a reading of ``metric`` for ``patient_id`` may not be stored; None if it may."""
        ...

    def source_refusal(self, *, source: str, patient_id: str) -> str | None:
        """Why ``source`` may not write for ``patient_id`` (none of its accounts or devices
        is linked to the patient); None if it may."""
        ...


class AllowAll:
    """A registry that refuses nothing (``PGHD_INGEST_CONSENT=off``: local trials only)."""

    def patient_for(self, *, source: str, account: str) -> str | None:
        return None

    def refusal(self, *, patient_id: str, metric: Metric) -> str | None:
        return None

    def source_refusal(self, *, source: str, patient_id: str) -> str | None:
        return None


def pointer_of(base: str, loc: Iterable[str | int]) -> str:
    """A JSON pointer (RFC 6901): ``base`` followed by the escaped parts of ``loc``."""
    return base + "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in loc)


def error(pointer: str, detail: str, *, field_name: str | None = None) -> dict[str, Any]:
    """One item error in the shape of :class:`pghd.problems.ItemError`."""
    return {"pointer": pointer, "field": field_name, "detail": detail}


@dataclass(frozen=True)
class Candidate:
    """One reading an adapter found in a document, or the errors that kept it from being one.

    ``reading`` is in :class:`ReadingIn` shape (``patient_id`` may be left out when
    ``account`` names the vendor account or device the registry links to a patient);
    ``pointer`` says where in the posted document it came from (a JSON pointer, or an
    element path for non-JSON documents).
    """

    pointer: str
    reading: dict[str, Any] | None = None
    account: str | None = None
    errors: tuple[dict[str, Any], ...] = ()
    reason: str = "invalid"


@dataclass
class ItemOutcome:
    """What became of one candidate: a measurement to produce, or errors and their reason."""

    candidate: Candidate
    measurement: Measurement | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None

    @property
    def accepted(self) -> bool:
        return self.measurement is not None


def triage(
    candidates: Sequence[Candidate],
    *,
    source: str,
    received_at: datetime,
    registry: Registry,
    max_age: timedelta | None = None,
    metrics: IngestMetrics | None = None,
) -> list[ItemOutcome]:
    """Validate, canonicalise and consent-check every candidate, in order; a reading more
    than ``max_age`` older than ``received_at`` (the raw retention) is refused (``time``).

    Reasons of refusal (``invalid``, ``unit``, ``range``, ``time``, ``consent``,
    ``unknown-account``, ``unlinked-source`` or an adapter's own) are counted in
    ``readings_rejected``.
    """
    outcomes = [
        _triage_one(c, source=source, received_at=received_at, registry=registry, max_age=max_age)
        for c in candidates
    ]
    if metrics is not None:
        refused = Counter(o.reason for o in outcomes if o.reason is not None)
        for reason, count in refused.items():
            metrics.readings_rejected.labels(reason=reason).inc(count)
    return outcomes


def _triage_one(
    candidate: Candidate,
    *,
    source: str,
    received_at: datetime,
    registry: Registry,
    max_age: timedelta | None,
) -> ItemOutcome:
    if candidate.errors or candidate.reading is None:
        errors = list(candidate.errors) or [error(candidate.pointer, "not a reading")]
        return ItemOutcome(candidate, errors=errors, reason=candidate.reason)
    raw = candidate.reading
    if candidate.account is not None and "patient_id" not in raw:
        patient_id = registry.patient_for(source=source, account=candidate.account)
        if patient_id is None:
            detail = f"{source} account {candidate.account!r} is not linked to an enrolled patient"
            return ItemOutcome(
                candidate, errors=[error(candidate.pointer, detail)], reason="unknown-account"
            )
        raw = {**raw, "patient_id": patient_id}
    try:
        reading = ReadingIn.model_validate(raw)
    except ValidationError as exc:
        errors = [
            error(
                pointer_of(candidate.pointer, [str(p) for p in e["loc"]]),
                _message(e),
                field_name=".".join(str(p) for p in e["loc"]) or None,
            )
            for e in exc.errors(include_url=False, include_input=False)
        ]
        return ItemOutcome(candidate, errors=errors, reason="invalid")
    try:
        measurement = canonicalize(reading, vendor=source, received_at=received_at, max_age=max_age)
    except ReadingRejected as exc:
        errors = [
            error(pointer_of(candidate.pointer, [p.field]), p.message, field_name=p.field)
            for p in exc.problems
        ]
        return ItemOutcome(
            candidate, errors=errors, reason=_REASONS.get(exc.problems[0].field, "range")
        )
    unlinked = registry.source_refusal(source=source, patient_id=measurement.patient_id)
    if unlinked is not None:  # first: a source learns nothing of patients not its own
        return ItemOutcome(
            candidate, errors=[error(candidate.pointer, unlinked)], reason="unlinked-source"
        )
    refused = registry.refusal(patient_id=measurement.patient_id, metric=measurement.metric)
    if refused is not None:
        return ItemOutcome(candidate, errors=[error(candidate.pointer, refused)], reason="consent")
    return ItemOutcome(candidate, measurement=measurement)


def _message(err: Any) -> str:
    if err["type"] == "value_error" and "error" in err.get("ctx", {}):
        return str(err["ctx"]["error"])
    return str(err["msg"])


async def produce(
    gateway: Gateway,
    good: Sequence[Measurement],
    *,
    metrics: IngestMetrics,
    request_id: str,
    retry_after_s: int,
) -> None:
    """Send ``good`` keyed by patient; return once Kafka acknowledged all of them.

    Raises a 503 :class:`ProblemError` with ``Retry-After`` when Kafka cannot take them.
    """
    if not good:
        return
    records: Sequence[Record] = encode_readings(good, envelope=getattr(gateway, "envelope", "v2"))
    started = time.perf_counter()
    try:
        await gateway.send_batch(records)
    except KafkaUnavailable as exc:
        metrics.produce_seconds.labels(outcome="error").observe(time.perf_counter() - started)
        logger.warning("request %s: %d readings not produced: %s", request_id, len(good), exc)
        raise kafka_unavailable(
            f"readings were not stored, retry later: {exc}", retry_after_s=retry_after_s
        ) from exc
    metrics.produce_seconds.labels(outcome="ok").observe(time.perf_counter() - started)
    for metric, count in Counter(m.metric.value for m in good).items():
        metrics.readings_accepted.labels(metric=metric).inc(count)
