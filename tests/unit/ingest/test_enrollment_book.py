"""The in-memory enrollment registry fed from topic records (ingest/enrollment/book.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ingest.enrollment import EnrollmentBook
from pghd import wire
from pghd.catalogue import Metric
from pghd.enrollment import (
    Action,
    Change,
    Enrollment,
    EnrollmentStatus,
    enroll,
    grant,
    link,
    revoke,
    withdraw,
)

AT = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def change(action: Action) -> Change:
    return Change(change_id="c", action=action, at=AT, by="ops")


def record(enrollment: Enrollment) -> tuple[bytes, bytes]:
    return enrollment.patient_id.encode(), wire.encode(enrollment)


def test_latest_record_per_patient_wins_and_links_are_indexed() -> None:
    book = EnrollmentBook()
    e = enroll(None, patient_id="p1", change=change(Action.ENROLL))
    e = grant(e, metric=Metric.SPO2, change=change(Action.GRANT))
    e = link(e, source="acme", account="w1", change=change(Action.LINK))
    assert book.apply_record(*record(e)) == e
    assert book.patient_for(source="acme", account="w1") == "p1"
    assert book.patient_for(source="other", account="w1") is None
    assert book.refusal(patient_id="p1", metric=Metric.SPO2) is None
    assert book.refusal(patient_id="p2", metric=Metric.SPO2) == "patient p2 is not enrolled"

    book.apply_record(*record(revoke(e, metric=Metric.SPO2, change=change(Action.REVOKE))))
    assert book.refusal(patient_id="p1", metric=Metric.SPO2) == (
        "patient p1 revoked consent to spo2 at 2026-11-25T08:00:00Z"
    )
    book.apply_record(*record(withdraw(e, change=change(Action.WITHDRAW))))
    assert book.patient_for(source="acme", account="w1") is None, "withdrawal drops links"
    assert len(book) == 1


def test_tombstone_forgets_the_patient_and_its_links() -> None:
    book = EnrollmentBook()
    e = link(
        enroll(None, patient_id="p1", change=change(Action.ENROLL)),
        source="acme",
        account="w1",
        change=change(Action.LINK),
    )
    book.apply_record(*record(e))
    assert book.apply_record(b"p1", None) is None
    assert book.get("p1") is None and book.patient_for(source="acme", account="w1") is None


def test_unreadable_records_raise_and_unknown_tombstones_are_harmless() -> None:
    book = EnrollmentBook()
    e = enroll(None, patient_id="p1", change=change(Action.ENROLL))
    book.apply_record(b"p2", None)
    for key, value in [(None, None), (b"other", wire.encode(e)), (b"p1", b"not json")]:
        with pytest.raises(ValueError):
            book.apply_record(key, value)
    assert len(book) == 0


def test_query_pages_by_patient_id_and_status() -> None:
    book = EnrollmentBook()
    for pid in ("c", "a", "b"):
        book.put(enroll(None, patient_id=pid, change=change(Action.ENROLL)))
    b = book.get("b")
    assert b is not None
    book.put(withdraw(b, change=change(Action.WITHDRAW)))
    total, page = book.query(limit=2)
    assert total == 3 and [e.patient_id for e in page] == ["a", "b"]
    assert [e.patient_id for e in book.query(offset=2)[1]] == ["c"]
    total, page = book.query(status=EnrollmentStatus.WITHDRAWN)
    assert total == 1 and page[0].patient_id == "b"
