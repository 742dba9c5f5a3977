"""Who a care-team member is and what they may do: roles, teams and their bearer tokens.

A :class:`Principal` is an authenticated person (or service) with one :class:`Role` and the
care teams they belong to. Roles grant :class:`Permission` s (:data:`GRANTS`):

- ``viewer``: reads the alerts, silences and care plans of their teams' patients;
- ``clinician``: also acknowledges and resolves alerts, silences them, sets care plans;
- ``admin``: all of that, for every patient whatever the team, and reads the audit trail;
- ``patient``: a patient (or their app) reads their own data and manages their own feedback,
  nothing of anyone else (``Principal.patient_id`` names them). Patient tokens are not in the
  users file: they are issued per patient (at enrollment or later) and their digests travel
  with the enrollment.

A viewer or clinician sees a patient only when the patient is assigned to one of their
teams (the enrollment's ``teams``); a patient in no team is seen by admins only.

Credentials live in a users file (JSON, :class:`UsersFile`) holding only SHA-256 digests of
the bearer tokens; a user may have several (rotation: add the new digest, hand out the new
token, remove the old digest). :class:`CredentialBook` reads it again when it changes, so
tokens are issued, rotated and revoked without a restart; a file that no longer parses is
refused and the previous users stay in force (the error is logged). A token is hashed and
compared with every digest in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from pghd.contracts import ID_PATTERN
from pghd.watched_file import WatchedJson

__all__ = [
    "CredentialBook",
    "Permission",
    "Principal",
    "Role",
    "UserEntry",
    "UsersFile",
    "checked_digests",
    "hash_token",
]


Name = Annotated[str, Field(pattern=ID_PATTERN)]
Digest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 hex of a token")]


class Role(StrEnum):
    VIEWER = "viewer"
    CLINICIAN = "clinician"
    ADMIN = "admin"
    PATIENT = "patient"


class Permission(StrEnum):
    READ = "read"  # alerts, silences, care plans of the patients one sees
    ACT = "act"  # acknowledge, resolve, silence, set or clear care plans
    ALL_PATIENTS = "all-patients"  # every patient, whatever their teams
    AUDIT = "audit"  # read the audit trail
    SELF = "self"  # a patient's own data and feedback settings (``/v1/me``), nothing else


GRANTS: Mapping[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.CLINICIAN: frozenset({Permission.READ, Permission.ACT}),
    Role.ADMIN: frozenset(Permission) - {Permission.SELF},
    Role.PATIENT: frozenset({Permission.SELF}),
}
"""What each role may do (the table of the module docstring)."""


def hash_token(token: str) -> str:
    """The SHA-256 hex digest of a bearer token, as the users file stores it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(ID_PATTERN)


def checked_digests(
    digests: Mapping[str, str], *, holder: str, secret: str, secret_name: str
) -> dict[str, str]:
    """A settings map of names to SHA-256 hex digests of their secrets, digests lower-cased;
    ``ValueError`` when a name is no id or a value is not a digest (the secret itself, most
    likely). ``holder``, ``secret`` and ``secret_name`` word the error: ("source", "key",
    "API key") for ingest's sources, ("user", "token", "bearer token") for people."""
    checked: dict[str, str] = {}
    for name, digest in digests.items():
        if not _NAME.match(name):
            raise ValueError(f"{holder} name {name!r} must match {ID_PATTERN}")
        normalised = digest.strip().lower()
        if not _SHA256_HEX.match(normalised):
            raise ValueError(
                f"the {secret} of {name!r} must be the SHA-256 hex digest of the {secret_name} "
                f"(64 hex characters), not the {secret} itself"
            )
        checked[name] = normalised
    return checked


@dataclass(frozen=True)
class Principal:
    """An authenticated care-team member (name, role, teams) or patient (``patient_id``)."""

    name: str
    role: Role
    teams: frozenset[str] = frozenset()
    patient_id: str | None = None

    def __post_init__(self) -> None:
        if (self.role is Role.PATIENT) != (self.patient_id is not None):
            raise ValueError("a patient principal, and only one, names its patient_id")
        if self.role is Role.PATIENT and self.teams:
            raise ValueError("a patient principal belongs to no care team")

    @classmethod
    def for_patient(cls, patient_id: str) -> Principal:
        """The principal of a patient's own token: ``patient:<id>``, role patient."""
        return cls(f"patient:{patient_id}", Role.PATIENT, patient_id=patient_id)

    def may(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]

    def sees(self, patient_teams: Iterable[str]) -> bool:
        """Whether this care-team principal may see a patient assigned to ``patient_teams``
        (a patient principal sees only themselves: :meth:`is_patient`)."""
        return self.may(Permission.ALL_PATIENTS) or not self.teams.isdisjoint(patient_teams)

    def is_patient(self, patient_id: str) -> bool:
        """Whether this is ``patient_id``'s own token."""
        return self.patient_id is not None and self.patient_id == patient_id


def _not_patient(role: Role) -> Role:
    if role is Role.PATIENT:
        raise ValueError("patients are not users of the users file: issue a patient token")
    return role


class UserEntry(BaseModel):
    """One user of the users file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Annotated[Role, AfterValidator(_not_patient)]
    teams: list[Name] = Field(default_factory=list)
    token_sha256: Annotated[list[Digest], Field(min_length=1)] = Field(
        description="digests of the user's bearer tokens (several while rotating)"
    )
    disabled: bool = Field(default=False, description="refuse every token of this user")


class UsersFile(BaseModel):
    """The users file: ``{"schema_version": 1, "users": {"<name>": {...}}}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    users: dict[Name, UserEntry] = Field(default_factory=dict)


def _entries(users: Mapping[str, UserEntry]) -> list[tuple[bytes, Principal]]:
    return [
        (bytes.fromhex(digest), Principal(name, entry.role, frozenset(entry.teams)))
        for name, entry in sorted(users.items())
        if not entry.disabled
        for digest in entry.token_sha256
    ]


class CredentialBook:
    """The principals of a users file (read again when it changes) plus fixed ones.

    ``fixed`` maps names to token digests that need no file (``PGHD_CARE_API_TOKENS``, the
    form before the users file); they are admins. ``recheck_s`` bounds how often the file
    is looked at (:class:`~pghd.watched_file.WatchedJson`).
    """

    def __init__(
        self,
        path: Path | None,
        *,
        fixed: Mapping[str, str] | None = None,
        recheck_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_reload: Callable[[str], None] | None = None,
    ) -> None:
        self._file = (
            None
            if path is None
            else WatchedJson(path, UsersFile, recheck_s=recheck_s, clock=clock, on_reload=on_reload)
        )
        self._fixed = _entries(
            {
                name: UserEntry(role=Role.ADMIN, token_sha256=[digest])
                for name, digest in (fixed or {}).items()
            }
        )
        self._read: UsersFile | None = None
        self._entries: list[tuple[bytes, Principal]] = []

    def _current(self) -> list[tuple[bytes, Principal]]:
        if self._file is not None:
            users = self._file.current()
            if users is not self._read:
                self._read, self._entries = users, _entries(users.users)
        return [*self._entries, *self._fixed]

    @property
    def configured(self) -> bool:
        """Whether any credential is configured (if not, every request is refused)."""
        return bool(self._current())

    def identify(self, token: str | None) -> Principal | None:
        """The principal owning ``token``; None when it is missing, unknown or disabled."""
        if not token:
            return None
        presented = hashlib.sha256(token.encode("utf-8")).digest()
        found: Principal | None = None
        for digest, principal in self._current():
            if hmac.compare_digest(presented, digest) and found is None:
                found = principal
        return found
