"""Enrollment and consent in ingest: the registry every reading is checked against.

:class:`EnrollmentBook` (in-memory state, implements :class:`ingest.intake.Registry`),
:class:`EnrollmentFollower` (keeps it up to date from ``pghd.enrollments.v1``) and
:class:`EnrollmentService` (the admin API's write path through Kafka).
"""

from __future__ import annotations

from ingest.enrollment.book import EnrollmentBook
from ingest.enrollment.follower import EnrollmentFollower
from ingest.enrollment.service import EnrollmentService, NotApplied, RegistryLoading

__all__ = [
    "EnrollmentBook",
    "EnrollmentFollower",
    "EnrollmentService",
    "NotApplied",
    "RegistryLoading",
]
