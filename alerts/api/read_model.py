"""The API's in-memory view of alerts and silences, fed from Kafka by :mod:`alerts.api.app`'s
follower (:class:`pghd.service.follower.CompactedFollower`).

Pure state, no I/O: :meth:`ReadModel.apply_alert_record` takes one record of the compacted
``pghd.alerts.v1`` topic (key = fingerprint, value = a wire-encoded :class:`Alert`, ``None``
= tombstone) and :meth:`ReadModel.apply_command_record` one record of
``pghd.alert-commands.v1``. As on the compacted topic, the latest value per fingerprint wins:
a new incident with the same labels replaces the earlier one, whose ``alert_id`` is dropped.

The worker does not publish silences, so they are rebuilt from the silence and
expire-silence commands on the commands topic (every API instance's, within its retention),
plus the ones this process issued (added as soon as Kafka acknowledged them).

Care plans: :meth:`ReadModel.apply_care_plan_record` takes one record of the compacted
``pghd.care-plans.v1`` (key = patient id, value = a wire-encoded :class:`CarePlan`,
``None`` = cleared); the latest per patient is kept in ``care_plans``.

Feedback: :meth:`ReadModel.apply_feedback_record` takes one record of the compacted
``pghd.feedback-subscriptions.v1``; each patient's registration is kept in ``feedback``,
without its signing secret (the API answers the secret once, when it makes it).

Care teams: :meth:`ReadModel.apply_enrollment_record` takes one record of the compacted
``pghd.enrollments.v1``; each patient's ``teams`` decide which care-team members see them,
and the digests of their own tokens (``patient_tokens``) let the patient in to ``/v1/me``
(``patient_tokens``, a :class:`~pghd.patient_tokens.PatientTokenBook`): a token issued,
rotated or revoked works, or stops working, as soon as its record is read here.
An enrollment tombstone is an erasure (:mod:`pghd.erasure`): it drops everything held about
the patient (teams, care plan, alerts, silences, feedback registration). Silences are listed
only for enrolled patients (:meth:`ReadModel.list_silences`): the commands topic keeps an
erased patient's silence commands for its retention (30 days), and a restart reads them
again, whether before the tombstone or after it (or once the tombstone itself is compacted
away).

:meth:`ReadModel.apply_record` takes a record of any of these topics (:data:`FOLLOWED`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pghd import wire
from pghd.alert_commands import AlertCommand, CommandKind, Silence
from pghd.alerting import Alert, AlertState
from pghd.care_plans import CarePlan
from pghd.contracts import Severity
from pghd.enrollment import read_record
from pghd.feedback import subscription
from pghd.feedback.subscription import FeedbackRegistration
from pghd.patient_tokens import PatientTokenBook
from pghd.topics import ALERT_COMMANDS, ALERTS, CARE_PLANS, ENROLLMENTS, FEEDBACK_SUBSCRIPTIONS

__all__ = ["FOLLOWED", "AlertIndex", "ReadModel", "SilenceBook", "SilenceEntry", "SilenceState"]

FOLLOWED = (ALERTS, ALERT_COMMANDS, CARE_PLANS, ENROLLMENTS, FEEDBACK_SUBSCRIPTIONS)
"""The topics the read model is built from, each read from its beginning."""

SilenceState = Literal["pending", "active", "expired"]


class AlertIndex:
    """The latest :class:`Alert` per fingerprint, also found by ``alert_id``."""

    def __init__(self) -> None:
        self._by_fingerprint: dict[str, Alert] = {}
        self._by_id: dict[str, Alert] = {}

    def __len__(self) -> int:
        return len(self._by_fingerprint)

    def put(self, alert: Alert) -> None:
        """Store ``alert`` as the current state of its fingerprint."""
        self.remove(alert.fingerprint)
        self._by_fingerprint[alert.fingerprint] = alert
        self._by_id[alert.alert_id] = alert

    def remove(self, fingerprint: str) -> None:
        """Forget the alert of ``fingerprint`` (a tombstone)."""
        earlier = self._by_fingerprint.pop(fingerprint, None)
        if earlier is not None and self._by_id.get(earlier.alert_id) is earlier:
            del self._by_id[earlier.alert_id]

    def remove_patient(self, patient_id: str) -> int:
        """Forget every alert of ``patient_id``; how many."""
        theirs = [fp for fp, a in self._by_fingerprint.items() if a.patient_id == patient_id]
        for fingerprint in theirs:
            self.remove(fingerprint)
        return len(theirs)

    def get(self, ref: str) -> Alert | None:
        """The alert with id ``ref``, else the one with fingerprint ``ref``."""
        return self._by_id.get(ref) or self._by_fingerprint.get(ref)

    def query(
        self,
        *,
        state: AlertState | None = None,
        patient_id: str | None = None,
        severity: Severity | None = None,
        team: str | None = None,
        team_of: Callable[[str], str | None] | None = None,
        visible: Callable[[str], bool] | None = None,
        limit: int | None = None,
    ) -> list[Alert]:
        """Alerts matching every given filter (``visible``: of the patients it accepts),
        most recently updated first."""
        found = [
            alert
            for alert in self._by_fingerprint.values()
            if (visible is None or visible(alert.patient_id))
            and (state is None or alert.status is state)
            and (patient_id is None or alert.patient_id == patient_id)
            and (severity is None or alert.severity is severity)
            and (team is None or (team_of is not None and team_of(alert.patient_id) == team))
        ]
        found.sort(key=lambda a: (a.updated_at, a.alert_id), reverse=True)
        return found if limit is None else found[:limit]


@dataclass(frozen=True, slots=True)
class SilenceEntry:
    """A silence and, once someone expired it, when and by whom."""

    silence: Silence
    expired_at: datetime | None = None
    expired_by: str | None = None

    @property
    def ends_at(self) -> datetime:
        """When it stops muting: its end, or when it was expired if earlier."""
        end = self.silence.ends_at
        return end if self.expired_at is None else min(end, self.expired_at)

    def state(self, now: datetime) -> SilenceState:
        """``pending`` before it starts, ``active`` while it mutes, ``expired`` after."""
        if now >= self.ends_at:
            return "expired"
        return "pending" if now < self.silence.starts_at else "active"


@dataclass
class SilenceBook:
    """Silences by id, in the order they were first seen."""

    _entries: dict[str, SilenceEntry] = field(default_factory=dict)

    def add(self, silence: Silence) -> None:
        """Record ``silence`` (seen again, e.g. issued here then read back: kept as it was)."""
        self._entries.setdefault(silence.silence_id, SilenceEntry(silence))

    def expire(self, silence_id: str, *, at: datetime, by: str) -> None:
        """Mark ``silence_id`` expired at ``at`` (the first expiry wins; unknown ids ignored)."""
        entry = self._entries.get(silence_id)
        if entry is not None and entry.expired_at is None:
            self._entries[silence_id] = SilenceEntry(entry.silence, expired_at=at, expired_by=by)

    def get(self, silence_id: str) -> SilenceEntry | None:
        """The silence with this id, if known."""
        return self._entries.get(silence_id)

    def forget(self, patient_id: str) -> int:
        """Drop every silence of ``patient_id`` (an erasure); how many."""
        theirs = [
            silence_id
            for silence_id, entry in self._entries.items()
            if entry.silence.matchers.get("patient_id") == patient_id
        ]
        for silence_id in theirs:
            del self._entries[silence_id]
        return len(theirs)

    def list(
        self,
        *,
        now: datetime,
        state: SilenceState | None = None,
        patient_id: str | None = None,
        visible: Callable[[str], bool] | None = None,
    ) -> list[SilenceEntry]:
        """Silences in ``state`` (any when None) for ``patient_id`` (any when None), of
        the patients ``visible`` accepts (all when None)."""
        return [
            entry
            for entry in self._entries.values()
            if (visible is None or visible(entry.silence.matchers.get("patient_id", "")))
            and (state is None or entry.state(now) == state)
            and (patient_id is None or entry.silence.matchers.get("patient_id") == patient_id)
        ]


@dataclass
class ReadModel:
    """What the API knows: alerts, silences, and whether it has caught up with Kafka."""

    alerts: AlertIndex = field(default_factory=AlertIndex)
    silences: SilenceBook = field(default_factory=SilenceBook)
    care_plans: dict[str, CarePlan] = field(default_factory=dict)
    patient_teams: dict[str, frozenset[str]] = field(default_factory=dict)
    patient_tokens: PatientTokenBook = field(default_factory=PatientTokenBook)
    feedback: dict[str, FeedbackRegistration] = field(default_factory=dict)
    """each patient's feedback registration (never its secret)"""
    ready: bool = False
    """True once the topics were read up to their end offsets at startup."""

    def apply_record(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """Apply one record of any of :data:`FOLLOWED` (by its ``topic``); raises
        ``ValueError`` on a bad one."""
        if topic == ALERTS:
            self.apply_alert_record(key, value)
        elif topic == CARE_PLANS:
            self.apply_care_plan_record(key, value)
        elif topic == ENROLLMENTS:
            self.apply_enrollment_record(key, value)
        elif topic == ALERT_COMMANDS:
            self.apply_command_record(value)
        elif topic == FEEDBACK_SUBSCRIPTIONS:
            self.apply_feedback_record(key, value)
        else:
            raise ValueError(f"{topic} is not a topic of the read model")

    def apply_alert_record(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one ``pghd.alerts.v1`` record; raises ``ValueError`` on a bad one."""
        if value is None:
            if key is None:
                raise ValueError("tombstone without a key")
            self.remove_alert(key.decode("utf-8"))
            return
        self.alerts.put(wire.decode(Alert, value))

    def remove_alert(self, fingerprint: str) -> None:
        """Forget the alert of ``fingerprint``."""
        self.alerts.remove(fingerprint)

    def apply_command_record(self, value: bytes | None) -> None:
        """Apply one ``pghd.alert-commands.v1`` record (only silences matter here)."""
        if value is None:
            return
        self.apply_command(wire.decode(AlertCommand, value))

    def apply_command(self, command: AlertCommand) -> None:
        """Take note of a silence issued or expired (by this API or another instance)."""
        if command.kind is CommandKind.SILENCE and command.silence is not None:
            self.silences.add(command.silence)
        elif command.kind is CommandKind.EXPIRE_SILENCE and command.silence_id is not None:
            self.silences.expire(command.silence_id, at=command.issued_at, by=command.by)

    def apply_care_plan_record(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one ``pghd.care-plans.v1`` record; raises ``ValueError`` on a bad one."""
        patient_id, plan = wire.decode_keyed(
            CarePlan, key, value, owner=lambda p: p.patient_id, what="care plan", key_name="patient"
        )
        if plan is None:
            self.care_plans.pop(patient_id, None)
        else:
            self.care_plans[patient_id] = plan

    def apply_feedback_record(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one ``pghd.feedback-subscriptions.v1`` record, keeping the registration
        without its secret; raises ``ValueError`` on a bad one."""
        patient_id, found = subscription.read_record(key, value)
        if found is None:
            self.feedback.pop(patient_id, None)
        else:
            self.feedback[patient_id] = found.registration()

    def apply_enrollment_record(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one ``pghd.enrollments.v1`` record (the patient's teams and token digests
        matter here); raises ``ValueError`` on a bad one."""
        patient_id, enrollment = read_record(key, value)
        if enrollment is None:
            self.forget_patient(patient_id)
        else:
            self.patient_teams[patient_id] = frozenset(enrollment.teams)
            self.patient_tokens.put(patient_id, (t.sha256 for t in enrollment.patient_tokens))

    def forget_patient(self, patient_id: str) -> None:
        """Drop everything held about ``patient_id`` (their enrollment was tombstoned: an
        erasure): teams, their own tokens, care plan, feedback registration, alerts (their
        tombstones follow from the alerts worker, the registration's too) and silences
        (rebuilt from commands, which nothing else would remove)."""
        self.patient_teams.pop(patient_id, None)
        self.patient_tokens.forget(patient_id)
        self.care_plans.pop(patient_id, None)
        self.feedback.pop(patient_id, None)
        self.alerts.remove_patient(patient_id)
        self.silences.forget(patient_id)

    def enrolled(self, patient_id: str) -> bool:
        """Whether ``patient_id`` has an enrollment (erased and unknown patients have none)."""
        return patient_id in self.patient_teams

    def teams_of(self, patient_id: str) -> frozenset[str]:
        """The care teams ``patient_id`` is assigned to (none when unknown)."""
        return self.patient_teams.get(patient_id, frozenset())

    def list_silences(
        self,
        *,
        now: datetime,
        state: SilenceState | None = None,
        patient_id: str | None = None,
        visible: Callable[[str], bool] | None = None,
    ) -> list[SilenceEntry]:
        """:meth:`SilenceBook.list`, only of enrolled patients: nothing for an erased (or
        unknown) one, whose silence commands may still be on the commands topic."""
        return self.silences.list(
            now=now,
            state=state,
            patient_id=patient_id,
            visible=lambda p: self.enrolled(p) and (visible is None or visible(p)),
        )

    def silence(self, silence_id: str) -> SilenceEntry | None:
        """The silence with this id, if known and of an enrolled patient."""
        entry = self.silences.get(silence_id)
        if entry is None or not self.enrolled(entry.silence.matchers.get("patient_id", "")):
            return None
        return entry

    def load_alerts(self, alerts: Iterable[Alert]) -> None:
        """Put several alerts at once (tests and tools)."""
        for alert in alerts:
            self.alerts.put(alert)
