"""Patients' own bearer tokens: minting one, and finding whose a presented token is.

A patient token is ``pghd_pt_`` followed by 43 URL-safe characters (256 random bits), so a
secret scanner can tell one from other strings and nobody can guess one. Only its SHA-256
digest is kept anywhere (:class:`pghd.enrollment.PatientToken`, on the enrollments topic);
the token is shown once, when issued.

:class:`PatientTokenBook` maps digests to patients, from the enrollments it is given (pure
state; the care-team API's read model feeds it from ``pghd.enrollments.v1``). A presented
token is hashed and its digest looked up: the lookup's timing can tell at most something
about a digest, and a digest gives nothing away about a token (SHA-256 preimages), which is
why a dictionary is as safe here as a constant-time comparison with every digest.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from pghd.access import hash_token

__all__ = ["TOKEN_PREFIX", "PatientTokenBook", "new_token"]

TOKEN_PREFIX = "pghd_pt_"


def new_token() -> str:
    """A fresh patient token (256 random bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class PatientTokenBook:
    """Which patient holds which token digest."""

    def __init__(self) -> None:
        self._patient_of: dict[str, str] = {}
        self._digests_of: dict[str, frozenset[str]] = {}

    def __len__(self) -> int:
        return len(self._patient_of)

    def put(self, patient_id: str, digests: Iterable[str]) -> None:
        """``patient_id`` holds exactly ``digests`` from now on (none: every token revoked)."""
        self.forget(patient_id)
        held = frozenset(digests)
        if held:
            self._digests_of[patient_id] = held
            self._patient_of.update(dict.fromkeys(held, patient_id))

    def forget(self, patient_id: str) -> None:
        """``patient_id`` holds no token any more (revoked, or erased)."""
        for digest in self._digests_of.pop(patient_id, frozenset()):
            if self._patient_of.get(digest) == patient_id:
                del self._patient_of[digest]

    def patient_of(self, token: str | None) -> str | None:
        """The patient whose token ``token`` is; None when it is nobody's."""
        if not token:
            return None
        return self._patient_of.get(hash_token(token))
