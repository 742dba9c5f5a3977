"""The in-memory registry of enrollments that ingest consults for every reading.

Pure state, no I/O: :meth:`EnrollmentBook.apply_record` takes one record of the compacted
``pghd.enrollments.v1`` topic (key = patient id, value = a wire-encoded
:class:`~pghd.enrollment.Enrollment`, ``None`` = tombstone). The latest value per patient
wins, as on the topic. The book keeps a ``(source, account) -> patient`` index of the links
and implements :class:`ingest.intake.Registry`.
"""

from __future__ import annotations

from pghd.catalogue import Metric
from pghd.enrollment import Enrollment, EnrollmentStatus, read_record, refusal, source_refusal

__all__ = ["EnrollmentBook"]


class EnrollmentBook:
    """Every patient's current enrollment, and which patient each linked account belongs to."""

    def __init__(self) -> None:
        self._by_patient: dict[str, Enrollment] = {}
        self._by_link: dict[tuple[str, str], str] = {}
        self.ready = False
        """True once the topic was read up to the end offsets it had at startup."""

    def __len__(self) -> int:
        return len(self._by_patient)

    def apply_record(self, key: bytes | None, value: bytes | None) -> Enrollment | None:
        """Apply one topic record; the enrollment it carried (None for a tombstone).

        Raises ``ValueError`` (or pydantic's ``ValidationError``) on a record it cannot read.
        """
        patient_id, enrollment = read_record(key, value)
        if enrollment is None:
            self.remove(patient_id)
        else:
            self.put(enrollment)
        return enrollment

    def put(self, enrollment: Enrollment) -> None:
        """Store ``enrollment`` as its patient's current state (and re-index its links)."""
        self.remove(enrollment.patient_id)
        self._by_patient[enrollment.patient_id] = enrollment
        for link in enrollment.links:
            self._by_link[(link.source, link.account)] = enrollment.patient_id

    def remove(self, patient_id: str) -> None:
        """Forget ``patient_id`` and its links."""
        earlier = self._by_patient.pop(patient_id, None)
        if earlier is None:
            return
        for link in earlier.links:
            if self._by_link.get((link.source, link.account)) == patient_id:
                del self._by_link[(link.source, link.account)]

    def get(self, patient_id: str) -> Enrollment | None:
        """The current enrollment of ``patient_id``, if it ever enrolled."""
        return self._by_patient.get(patient_id)

    def holder(self, *, source: str, account: str) -> str | None:
        """The patient ``source``'s ``account`` is linked to, if any."""
        return self._by_link.get((source, account))

    def query(
        self,
        *,
        status: EnrollmentStatus | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> tuple[int, list[Enrollment]]:
        """Enrollments in ``status`` (any when None) by patient id: the total, and one page."""
        found = sorted(
            (e for e in self._by_patient.values() if status is None or e.status is status),
            key=lambda e: e.patient_id,
        )
        end = None if limit is None else offset + limit
        return len(found), found[offset:end]

    # ingest.intake.Registry

    def patient_for(self, *, source: str, account: str) -> str | None:
        """The enrolled patient ``source``'s ``account`` (or device id) is linked to, if any."""
        return self.holder(source=source, account=account)

    def refusal(self, *, patient_id: str, metric: Metric) -> str | None:
        """Why a reading of ``metric`` for ``patient_id`` may not be stored; None if it may."""
        return refusal(self._by_patient.get(patient_id), patient_id=patient_id, metric=metric)

    def source_refusal(self, *, source: str, patient_id: str) -> str | None:
        """Why ``source`` may not write for ``patient_id`` (no link of it); None if it may."""
        enrollment = self._by_patient.get(patient_id)
        return source_refusal(enrollment, patient_id=patient_id, source=source)
