"""One webhook push, purely: check its signature, find its readings, write its dead letters.

The route (``ingest/api/routes/webhooks.py``) does the I/O around these: it reads the body,
keeps the replay guard, asks the registry through :func:`ingest.intake.triage`, and produces
the readings and the dead letters to Kafka.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, Field

from ingest.adapters import junction, terra
from ingest.adapters.vendor_samples import Extraction, PayloadError
from ingest.intake import Candidate, ItemOutcome, Registry, error
from ingest.webhooks.config import SourceKind, WebhookSource
from ingest.webhooks.signing import (
    PGHD_SIGNATURE_HEADER,
    SVIX_ID_HEADER,
    SVIX_SIGNATURE_HEADER,
    SVIX_TIMESTAMP_HEADER,
    TERRA_SIGNATURE_HEADER,
    Verified,
    verify_svix,
    verify_timestamped,
)
from pghd import wire
from pghd.catalogue import Metric
from pghd.contracts import DeadLetter
from pghd.problems import ItemError
from pghd.service.producer import Record

__all__ = [
    "DLQ_STAGE",
    "PushResult",
    "RefusedItem",
    "dead_letters",
    "extract",
    "kept_patient",
    "may_keep",
    "signature_header_of",
    "verify",
]

DLQ_STAGE = "ingest.webhooks"


class RefusedItem(BaseModel):
    """An item of the push that went to the dead-letter topic instead of the readings."""

    pointer: str = Field(description="JSON pointer into the push")
    reason: str | None = Field(
        description="unknown-account, consent, unlinked-source, invalid, unit, range..."
    )
    errors: list[ItemError]


class PushResult(BaseModel):
    """What became of a push: readings produced, items dead-lettered, data not stored."""

    source: str
    event: str = Field(description="the vendor's event type ('readings' for generic pushes)")
    accepted: int
    dead_lettered: int
    ignored: int = Field(description="samples or events of kinds pghd does not store")
    ignored_kinds: dict[str, int]
    refused: list[RefusedItem]


def signature_header_of(kind: SourceKind) -> str:
    """The header that carries the signature of a source of ``kind``."""
    return {
        SourceKind.GENERIC: PGHD_SIGNATURE_HEADER,
        SourceKind.TERRA: TERRA_SIGNATURE_HEADER,
        SourceKind.JUNCTION: SVIX_SIGNATURE_HEADER,
    }[kind]


def verify(
    source: WebhookSource,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance_s: float,
) -> Verified:
    """Check the push's signature by its source's scheme (raises ``SignatureRefused``).

    ``headers`` must look names up case-insensitively (Starlette's ``Headers`` does).
    """
    if source.kind is SourceKind.JUNCTION:
        return verify_svix(
            msg_id=headers.get(SVIX_ID_HEADER),
            timestamp=headers.get(SVIX_TIMESTAMP_HEADER),
            signature=headers.get(SVIX_SIGNATURE_HEADER),
            body=body,
            keys=source.keys(),
            now=now,
            tolerance_s=tolerance_s,
        )
    name = signature_header_of(source.kind)
    return verify_timestamped(
        headers.get(name), body, secrets=source.keys(), now=now, tolerance_s=tolerance_s, name=name
    )


def extract(kind: SourceKind, document: Any, *, max_batch: int) -> Extraction:
    """The readings of a push of ``kind`` (raises :class:`PayloadError` for a wrong shape)."""
    if kind is SourceKind.TERRA:
        return terra.extract(document)
    if kind is SourceKind.JUNCTION:
        return junction.extract(document)
    return _generic(document, max_batch=max_batch)


def _generic(document: Any, *, max_batch: int) -> Extraction:
    """pghd's own reading JSON: one reading or an array of them, as ``POST /v1/measurements``."""
    if isinstance(document, dict):
        items, batch = [document], False
    elif isinstance(document, list):
        if not document:
            raise PayloadError(f"the batch is empty; send 1..{max_batch} readings")
        if len(document) > max_batch:
            raise PayloadError(
                f"the batch has {len(document)} readings; the limit is {max_batch} per push"
            )
        items, batch = document, True
    else:
        raise PayloadError("the body must be a reading object or an array of readings")
    extraction = Extraction(event="readings", account=None)
    for index, raw in enumerate(items):
        pointer = f"/{index}" if batch else ""
        extraction.candidates.append(
            Candidate(pointer=pointer, reading=raw)
            if isinstance(raw, dict)
            else Candidate(pointer=pointer, errors=(error(pointer, "a reading must be an object"),))
        )
    return extraction


def dead_letters(
    refused: Sequence[ItemOutcome],
    *,
    source: str,
    event: str,
    failed_at: datetime,
    registry: Registry,
) -> list[Record]:
    """One :class:`DeadLetter` per refused item, keyed by the vendor account (or source).

    The payload keeps what is needed to replay an invalid item once the cause is fixed:
    source, event, account, where it was in the push, the reading as the adapter made it,
    and the errors. An item refused because nobody may store it (no consent, an account
    linked to no patient, a source not linked to the patient) keeps its metadata only: the
    values of a person who did not consent are not kept anywhere, the DLQ included. So does
    an invalid item unless it is known to be a consenting patient's (:func:`may_keep`); the
    letter of one that is names that patient (``patient_id``), so that the alerts worker can
    tell them their reading could not be stored (their feedback, ``reading_refused``).
    """
    records: list[Record] = []
    for outcome in refused:
        candidate = outcome.candidate
        patient_id = kept_patient(outcome, source=source, registry=registry)
        whole = patient_id is not None
        errors = outcome.errors
        if not whole and outcome.reason not in UNCONSENTED:  # its details may quote values
            errors = [{**e, "detail": _WITHHELD} for e in errors]
        details = "; ".join(f"{e['pointer']}: {e['detail']}" for e in errors)
        payload = {
            "source": source,
            "event": event,
            "account": candidate.account,
            "pointer": candidate.pointer,
            "reading": _kept(candidate.reading, whole=whole),
            "errors": errors,
        }
        if patient_id is not None:
            payload["patient_id"] = patient_id
        letter = DeadLetter(
            stage=DLQ_STAGE,
            reason=f"{outcome.reason or 'invalid'}: {details}",
            key=candidate.account,
            payload=orjson.dumps(payload).decode("utf-8"),
            failed_at=failed_at,
        )
        key = (candidate.account or source).encode("utf-8")
        records.append((key, wire.encode(letter)))
    return records


UNCONSENTED = frozenset({"consent", "unknown-account", "unlinked-source"})
"""Refusal reasons under which nobody may store the reading: only its metadata is kept."""
_WITHHELD = "withheld: the reading is not known to be a consenting patient's"
_METADATA = (
    "patient_id",
    "metric",
    "unit",
    "effective_time",
    "effective_end",
    "effective_precision",
    "device_id",
)


def kept_patient(outcome: ItemOutcome, *, source: str, registry: Registry) -> str | None:
    """The patient whose refused item's values may be kept in the DLQ, if any: never for a
    refusal of consent or link; for any other refusal (invalid, out of range...) only when the
    reading is known to belong to a patient ``source`` may write for and who consents to its
    metric (that patient)."""
    if outcome.reason in UNCONSENTED:
        return None
    reading = outcome.candidate.reading or {}
    patient_id = reading.get("patient_id")
    account = outcome.candidate.account
    if not isinstance(patient_id, str) and account is not None:
        patient_id = registry.patient_for(source=source, account=account)
    try:
        metric = Metric(str(reading.get("metric")))
    except ValueError:
        return None
    if (
        isinstance(patient_id, str)
        and registry.source_refusal(source=source, patient_id=patient_id) is None
        and registry.refusal(patient_id=patient_id, metric=metric) is None
    ):
        return patient_id
    return None


def may_keep(outcome: ItemOutcome, *, source: str, registry: Registry) -> bool:
    """Whether a refused item's values may be kept in the DLQ (:func:`kept_patient`)."""
    return kept_patient(outcome, source=source, registry=registry) is not None


def _kept(reading: dict[str, Any] | None, *, whole: bool) -> dict[str, Any] | None:
    """What a dead letter keeps of ``reading``: all of it, or its metadata only."""
    if reading is None or whole:
        return reading
    return {k: reading[k] for k in _METADATA if k in reading}
