"""Patients' own tokens in the care-team API: :class:`EnrolledPatientTokens` is what
``app.state.patient_tokens`` holds (:class:`alerts.api.deps.PatientTokens`).

The digests come with the enrollments the read model follows, so a token issued, rotated,
revoked or erased works (or stops working) as soon as its record is read. While the read
model is still reading the topics at startup, **every** patient token (by its ``pghd_pt_``
prefix) is answered ``503`` + ``Retry-After``, known or not: the topic is replayed from its
start, so a token issued before a later rotation, revocation or erasure is in the book until
that later record is read (compaction keeps old records in the active segment), and an
unknown token may be one whose issue has not been read yet (a patient's app that is told
its token is unknown may drop it). Other tokens are not patients' and get the usual ``401``
when nobody holds them.
"""

from __future__ import annotations

from alerts.api.read_model import ReadModel
from pghd.access import Principal
from pghd.patient_tokens import TOKEN_PREFIX
from pghd.service.follower import not_ready

__all__ = ["EnrolledPatientTokens"]


class EnrolledPatientTokens:
    """Who holds a patient token, from the read model's enrollments."""

    def __init__(self, model: ReadModel, *, retry_after_s: int) -> None:
        self._model = model
        self._retry_after_s = retry_after_s

    def identify(self, token: str | None) -> Principal | None:
        """The patient's own principal; None for a token nobody holds; the 503 problem for
        any patient token while the enrollments are still being read."""
        if token and token.startswith(TOKEN_PREFIX) and not self._model.ready:
            raise not_ready(
                "still reading the enrollments topic; patient tokens are not known yet",
                retry_after_s=self._retry_after_s,
            )
        patient_id = self._model.patient_tokens.patient_of(token)
        return None if patient_id is None else Principal.for_patient(patient_id)
