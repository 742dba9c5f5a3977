"""Enrollment and consent: who readings may be stored for, and which kinds of readings.

Pure models and functions, no I/O. An :class:`Enrollment` is the whole state of one patient
(it travels as is, keyed by patient id, on the compacted ``pghd.enrollments.v1`` topic):
enrolled or withdrawn, the vendor accounts and devices linked to the patient, one
:class:`Consent` per metric, and the care teams the patient is assigned to. The transitions
(:func:`enroll`, :func:`link`, :func:`unlink`, :func:`grant`, :func:`revoke`,
:func:`assign`, :func:`unassign`, :func:`withdraw`, :func:`issue_token`,
:func:`revoke_tokens`, or :func:`apply` with an
:class:`EnrollmentCommand`) return a new Enrollment, the same one when nothing changes, or
raise :class:`EnrollmentError`. :func:`refusal` says, in words a person understands, why a
reading of a metric may not be stored, and :func:`source_refusal` why a source (the holder
of an API key or webhook secret) may not write for a patient: a source writes only for the
patients one of its accounts or devices is linked to. :func:`read_record` reads one record
of the topic, for whoever keeps a view of it.

Consent governs storage: once revoked, no reading of that metric is stored any more,
whenever it was taken. Withdrawing revokes every consent and drops every link (the
accounts and devices may then be linked to someone else); a withdrawn patient may enroll
again, with no consent until granted anew.

Team assignment governs who sees the patient: the care-team API shows a patient to the
members of the teams it is assigned to (a patient in no team is seen by admins only). It is
not about storage, so withdrawing keeps the teams: the care team keeps seeing the history it
looked after until the patient's data is erased; :func:`unassign` ends that sooner.

Patient tokens let a patient (or their app) read their own data from the care-team API
(``/v1/me``). Only their SHA-256 digests travel here (``patient_tokens``); the token itself
is shown once, when issued. :func:`issue_token` replaces every token the patient held (so
issuing again is rotation: the old token stops working), :func:`revoke_tokens` drops them.
Like the teams, tokens are about sight, not storage: withdrawing keeps them (a withdrawn
patient still reads the history that was stored), and a token may be issued to a withdrawn
patient; erasure tombstones the enrollment, and the tokens go with it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from pghd import wire
from pghd.catalogue import Metric
from pghd.contracts import ID_PATTERN, PatientId, UtcDatetime

__all__ = [
    "ACCOUNT_PATTERN",
    "Action",
    "Change",
    "Consent",
    "Enrollment",
    "EnrollmentCommand",
    "EnrollmentError",
    "EnrollmentStatus",
    "ErrorKind",
    "Link",
    "PatientToken",
    "TeamName",
    "apply",
    "assign",
    "enroll",
    "grant",
    "issue_token",
    "link",
    "read_record",
    "refusal",
    "revoke",
    "revoke_tokens",
    "source_refusal",
    "unassign",
    "unlink",
    "withdraw",
]

ACCOUNT_PATTERN = r"^[^\s/][^/]{0,127}$"
"""A vendor account or device id: 1..128 characters, no slash, not starting with a space."""

SourceName = Annotated[str, Field(pattern=ID_PATTERN, description="vendor (API key) name")]
Account = Annotated[str, Field(pattern=ACCOUNT_PATTERN, description="vendor account or device id")]
TeamName = Annotated[
    str, Field(pattern=ID_PATTERN, description="care team whose members may see the patient")
]
TokenDigest = Annotated[
    str, Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 hex digest of a patient token")
]


def _sorted_unique(teams: list[str]) -> list[str]:
    """One order for the same set, so that equal assignments compare (and encode) equal."""
    return sorted(set(teams))


class EnrollmentStatus(StrEnum):
    ENROLLED = "enrolled"
    WITHDRAWN = "withdrawn"


class Action(StrEnum):
    """What an :class:`EnrollmentCommand` does."""

    ENROLL = "enroll"
    LINK = "link"
    UNLINK = "unlink"
    GRANT = "grant"
    REVOKE = "revoke"
    ASSIGN = "assign"
    UNASSIGN = "unassign"
    WITHDRAW = "withdraw"
    ISSUE_TOKEN = "issue_token"
    REVOKE_TOKENS = "revoke_tokens"


class ErrorKind(StrEnum):
    """Why a transition was refused: the patient is unknown, or the state forbids it."""

    NOT_FOUND = "not-found"
    CONFLICT = "conflict"


class EnrollmentError(ValueError):
    """A transition that may not happen; ``str(exc)`` says why in plain words."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Link(BaseModel):
    """A vendor account or device of ``source`` whose readings belong to the patient."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: SourceName
    account: Account
    linked_at: UtcDatetime


class Consent(BaseModel):
    """Consent to store one metric: granted at, and revoked at (None while it holds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    granted_at: UtcDatetime
    revoked_at: UtcDatetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class PatientToken(BaseModel):
    """A bearer token of the patient's own, by its digest (the token is never stored)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: TokenDigest
    issued_at: UtcDatetime


class Change(BaseModel):
    """The change that produced an Enrollment revision: what, when, by whom, and its id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    change_id: Annotated[str, Field(pattern=ID_PATTERN)]
    action: Action
    at: UtcDatetime
    by: str


class Enrollment(BaseModel):
    """The whole enrollment, consent and team state of one patient (one compacted-topic value)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    patient_id: PatientId
    status: EnrollmentStatus
    enrolled_at: UtcDatetime
    withdrawn_at: UtcDatetime | None = None
    links: list[Link] = Field(default_factory=list)
    consents: dict[Metric, Consent] = Field(default_factory=dict)
    teams: Annotated[list[TeamName], AfterValidator(_sorted_unique)] = Field(
        default_factory=list,
        description="care teams the patient is assigned to, sorted (absent in older records)",
    )
    patient_tokens: list[PatientToken] = Field(
        default_factory=list,
        description="digests of the patient's own bearer tokens (for /v1/me; absent while none)",
    )
    revision: Annotated[int, Field(ge=1, description="1 at enrollment, +1 per change")]
    change: Change = Field(description="the change that made this revision")

    def has_link(self, source: str, account: str) -> bool:
        return any(k.source == source and k.account == account for k in self.links)

    def to_record(self) -> bytes:
        """The compacted-topic value: compact JSON, without ``teams`` or ``patient_tokens``
        while there are none, so that instances older than those fields (which refuse
        unknown fields) still read every enrollment but those that use them."""
        doc = self.model_dump(mode="json", exclude_none=True)
        for optional in ("teams", "patient_tokens"):
            if not doc[optional]:
                del doc[optional]
        return orjson.dumps(doc)


def read_record(key: bytes | None, value: bytes | None) -> tuple[str, Enrollment | None]:
    """One ``pghd.enrollments.v1`` record: ``(patient id, its enrollment)``, or
    ``(patient id, None)`` for a tombstone; ``ValueError`` on a record that is not one."""
    return wire.decode_keyed(
        Enrollment, key, value, owner=lambda e: e.patient_id, what="enrollment", key_name="patient"
    )


class EnrollmentCommand(BaseModel):
    """One requested change to a patient's enrollment (what :func:`apply` takes)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Action
    patient_id: PatientId
    source: SourceName | None = None
    account: Account | None = None
    metric: Metric | None = None
    team: TeamName | None = None
    token_sha256: TokenDigest | None = None

    @model_validator(mode="after")
    def _fields_match_action(self) -> EnrollmentCommand:
        needs_link = self.action in (Action.LINK, Action.UNLINK)
        needs_metric = self.action in (Action.GRANT, Action.REVOKE)
        needs_team = self.action in (Action.ASSIGN, Action.UNASSIGN)
        needs_token = self.action is Action.ISSUE_TOKEN
        if needs_link != (self.source is not None and self.account is not None):
            raise ValueError(f"{self.action.value} takes source and account, and only it does")
        if needs_metric != (self.metric is not None):
            raise ValueError(f"{self.action.value} takes a metric, and only grant/revoke do")
        if needs_team != (self.team is not None):
            raise ValueError(f"{self.action.value} takes a team, and only assign/unassign do")
        if needs_token != (self.token_sha256 is not None):
            raise ValueError(f"{self.action.value} takes a token digest, and only issue_token does")
        return self


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _next(current: Enrollment, change: Change, **updates: object) -> Enrollment:
    return current.model_copy(
        update={**updates, "revision": current.revision + 1, "change": change}
    )


def _enrolled(current: Enrollment) -> Enrollment:
    if current.status is not EnrollmentStatus.ENROLLED:
        raise EnrollmentError(
            ErrorKind.CONFLICT, f"patient {current.patient_id} is not enrolled (withdrawn)"
        )
    return current


def enroll(current: Enrollment | None, *, patient_id: str, change: Change) -> Enrollment:
    """Enroll ``patient_id`` (again, after a withdrawal), with no link and no consent yet.

    Enrolling again keeps the teams the patient stayed assigned to while withdrawn."""
    if current is not None and current.status is EnrollmentStatus.ENROLLED:
        raise EnrollmentError(ErrorKind.CONFLICT, f"patient {patient_id} is already enrolled")
    if current is None:
        return Enrollment(
            patient_id=patient_id,
            status=EnrollmentStatus.ENROLLED,
            enrolled_at=change.at,
            revision=1,
            change=change,
        )
    return _next(
        current, change, status=EnrollmentStatus.ENROLLED, enrolled_at=change.at, withdrawn_at=None
    )


def link(
    current: Enrollment,
    *,
    source: str,
    account: str,
    change: Change,
    held_by: str | None = None,
) -> Enrollment:
    """Link ``source``'s ``account`` to the patient; ``held_by``: who holds it now, if anyone."""
    enrollment = _enrolled(current)
    if enrollment.has_link(source, account):
        return enrollment
    if held_by is not None and held_by != enrollment.patient_id:
        raise EnrollmentError(
            ErrorKind.CONFLICT, f"{source} account {account!r} is already linked to another patient"
        )
    new = Link(source=source, account=account, linked_at=change.at)
    return _next(enrollment, change, links=[*enrollment.links, new])


def unlink(current: Enrollment, *, source: str, account: str, change: Change) -> Enrollment:
    """Remove the link of ``source``'s ``account`` from the patient."""
    if not current.has_link(source, account):
        raise EnrollmentError(
            ErrorKind.NOT_FOUND,
            f"patient {current.patient_id} has no link to {source} account {account!r}",
        )
    kept = [k for k in current.links if not (k.source == source and k.account == account)]
    return _next(current, change, links=kept)


def grant(current: Enrollment, *, metric: Metric, change: Change) -> Enrollment:
    """Record consent to store ``metric`` (again, after a revocation)."""
    enrollment = _enrolled(current)
    held = enrollment.consents.get(metric)
    if held is not None and held.active:
        return enrollment
    consents = {**enrollment.consents, metric: Consent(granted_at=change.at)}
    return _next(enrollment, change, consents=consents)


def revoke(current: Enrollment, *, metric: Metric, change: Change) -> Enrollment:
    """Revoke consent to store ``metric`` from now on."""
    held = current.consents.get(metric)
    if held is None:
        raise EnrollmentError(
            ErrorKind.NOT_FOUND,
            f"patient {current.patient_id} has not consented to {metric.value}",
        )
    if not held.active:
        return current
    revoked = held.model_copy(update={"revoked_at": change.at})
    return _next(current, change, consents={**current.consents, metric: revoked})


def assign(current: Enrollment, *, team: str, change: Change) -> Enrollment:
    """Assign the patient to care team ``team``, whose members may then see the patient."""
    enrollment = _enrolled(current)
    if team in enrollment.teams:
        return enrollment
    return _next(enrollment, change, teams=sorted([*enrollment.teams, team]))


def unassign(current: Enrollment, *, team: str, change: Change) -> Enrollment:
    """Take the patient out of care team ``team``; allowed after a withdrawal too, so that
    a team's sight of the history can end before erasure."""
    if team not in current.teams:
        raise EnrollmentError(
            ErrorKind.NOT_FOUND, f"patient {current.patient_id} is not in team {team}"
        )
    return _next(current, change, teams=[t for t in current.teams if t != team])


def withdraw(current: Enrollment, *, change: Change) -> Enrollment:
    """Withdraw the patient: every consent revoked now, every link dropped.

    The teams stay: withdrawal stops storage, not sight, and the care team keeps seeing the
    history it looked after until the patient's data is erased (or :func:`unassign`). So do
    the patient's tokens: they keep reading their own history (or :func:`revoke_tokens`).
    """
    if current.status is EnrollmentStatus.WITHDRAWN:
        return current
    consents = {
        metric: c if not c.active else c.model_copy(update={"revoked_at": change.at})
        for metric, c in current.consents.items()
    }
    return _next(
        current,
        change,
        status=EnrollmentStatus.WITHDRAWN,
        withdrawn_at=change.at,
        links=[],
        consents=consents,
    )


def issue_token(current: Enrollment, *, sha256: str, change: Change) -> Enrollment:
    """Give the patient the token whose digest is ``sha256``, in place of any they held (a
    re-issue is a rotation); allowed after a withdrawal too: a withdrawn patient still
    reads their own history."""
    if [t.sha256 for t in current.patient_tokens] == [sha256]:
        return current
    token = PatientToken(sha256=sha256, issued_at=change.at)
    return _next(current, change, patient_tokens=[token])


def revoke_tokens(current: Enrollment, *, change: Change) -> Enrollment:
    """Drop every token of the patient; 404 (not found) when they hold none."""
    if not current.patient_tokens:
        raise EnrollmentError(
            ErrorKind.NOT_FOUND, f"patient {current.patient_id} holds no patient token"
        )
    return _next(current, change, patient_tokens=[])


def apply(
    current: Enrollment | None,
    command: EnrollmentCommand,
    *,
    change: Change,
    held_by: str | None = None,
) -> Enrollment:
    """Apply ``command`` to ``current`` (None: never enrolled); see the single transitions.

    ``held_by`` is the patient the command's account is linked to now (for ``link``).
    """
    if current is not None and current.patient_id != command.patient_id:
        raise ValueError("the command is about another patient")
    if command.action is Action.ENROLL:
        return enroll(current, patient_id=command.patient_id, change=change)
    if current is None:
        raise EnrollmentError(ErrorKind.NOT_FOUND, f"patient {command.patient_id} is not enrolled")
    if command.action in (Action.LINK, Action.UNLINK):
        assert command.source is not None and command.account is not None
        if command.action is Action.LINK:
            return link(
                current,
                source=command.source,
                account=command.account,
                change=change,
                held_by=held_by,
            )
        return unlink(current, source=command.source, account=command.account, change=change)
    if command.action in (Action.GRANT, Action.REVOKE):
        assert command.metric is not None
        step = grant if command.action is Action.GRANT else revoke
        return step(current, metric=command.metric, change=change)
    if command.action in (Action.ASSIGN, Action.UNASSIGN):
        assert command.team is not None
        move = assign if command.action is Action.ASSIGN else unassign
        return move(current, team=command.team, change=change)
    if command.action is Action.ISSUE_TOKEN:
        assert command.token_sha256 is not None
        return issue_token(current, sha256=command.token_sha256, change=change)
    if command.action is Action.REVOKE_TOKENS:
        return revoke_tokens(current, change=change)
    return withdraw(current, change=change)


def refusal(enrollment: Enrollment | None, *, patient_id: str, metric: Metric) -> str | None:
    """Why a reading of ``metric`` for ``patient_id`` may not be stored; None when it may."""
    if enrollment is None:
        return f"patient {patient_id} is not enrolled"
    if enrollment.status is EnrollmentStatus.WITHDRAWN:
        withdrawn = (
            f" (withdrew at {_when(enrollment.withdrawn_at)})" if enrollment.withdrawn_at else ""
        )
        return f"patient {patient_id} is not enrolled{withdrawn}"
    consent = enrollment.consents.get(metric)
    if consent is None:
        return f"patient {patient_id} has not consented to {metric.value}"
    if consent.revoked_at is not None:
        return (
            f"patient {patient_id} revoked consent to {metric.value} at {_when(consent.revoked_at)}"
        )
    return None


def source_refusal(enrollment: Enrollment | None, *, patient_id: str, source: str) -> str | None:
    """Why ``source`` may not write readings for ``patient_id``: the patient is not enrolled,
    or none of the source's accounts or devices is linked to them. One message for both, and
    checked before consent, so that a source learns nothing about a patient who is not its
    own (whether they exist, withdrew, or what they consented to). None when it may."""
    if (
        enrollment is not None
        and enrollment.status is EnrollmentStatus.ENROLLED
        and any(k.source == source for k in enrollment.links)
    ):
        return None
    return f"patient {patient_id} is not enrolled with source {source}"
