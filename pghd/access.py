"""Who a care-team member is and what they may do: roles, teams and their bearer tokens.

A :class:`Principal` is an authenticated person (or service) with one :class:`Role` and the
care teams they belong to. Roles grant :class:`Permission` s (:data:`GRANTS`):

- ``viewer``: reads the alerts, silences and care plans of their teams' patients;
- ``clinician``: also acknowledges and resolves alerts, silences them, sets care plans;
- ``admin``: all of that, for every patient whatever the team, and reads the audit trail.

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
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pghd.contracts import ID_PATTERN

__all__ = [
    "CredentialBook",
    "Permission",
    "Principal",
    "Role",
    "UserEntry",
    "UsersFile",
    "hash_token",
]

logger = logging.getLogger(__name__)

Name = Annotated[str, Field(pattern=ID_PATTERN)]
Digest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 hex of a token")]


class Role(StrEnum):
    VIEWER = "viewer"
    CLINICIAN = "clinician"
    ADMIN = "admin"


class Permission(StrEnum):
    READ = "read"  # alerts, silences, care plans of the patients one sees
    ACT = "act"  # acknowledge, resolve, silence, set or clear care plans
    ALL_PATIENTS = "all-patients"  # every patient, whatever their teams
    AUDIT = "audit"  # read the audit trail


GRANTS: Mapping[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.CLINICIAN: frozenset({Permission.READ, Permission.ACT}),
    Role.ADMIN: frozenset(Permission),
}
"""What each role may do (the table of the module docstring)."""


def hash_token(token: str) -> str:
    """The SHA-256 hex digest of a bearer token, as the users file stores it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """An authenticated care-team member: name, role and teams."""

    name: str
    role: Role
    teams: frozenset[str] = frozenset()

    def may(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]

    def sees(self, patient_teams: Iterable[str]) -> bool:
        """Whether this principal may see a patient assigned to ``patient_teams``."""
        return self.may(Permission.ALL_PATIENTS) or not self.teams.isdisjoint(patient_teams)


class UserEntry(BaseModel):
    """One user of the users file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Role
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
    form before the users file); they are admins. ``recheck_s`` bounds how often the file's
    modification time and size are looked at.
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
        self._path = path
        self._fixed = _entries(
            {
                name: UserEntry(role=Role.ADMIN, token_sha256=[digest])
                for name, digest in (fixed or {}).items()
            }
        )
        self._recheck_s = recheck_s
        self._clock = clock
        self._on_reload = on_reload
        self._checked_at: float | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._entries: list[tuple[bytes, Principal]] = []
        if path is not None:
            self._entries = _entries(self._read(path).users)  # a bad file stops the start
            self._stamp = self._stat(path)
            self._checked_at = clock()

    @staticmethod
    def _read(path: Path) -> UsersFile:
        return UsersFile.model_validate_json(path.read_bytes())

    @staticmethod
    def _stat(path: Path) -> tuple[int, int, int]:
        st = os.stat(path)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    @property
    def configured(self) -> bool:
        """Whether any credential is configured (if not, every request is refused)."""
        self._refresh()
        return bool(self._entries or self._fixed)

    def _refresh(self) -> None:
        if self._path is None:
            return
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < self._recheck_s:
            return
        self._checked_at = now
        try:
            stamp = self._stat(self._path)
            if stamp == self._stamp:
                return
            users = self._read(self._path)
        except (OSError, ValidationError, ValueError) as exc:
            logger.error(
                "users file %s not reloaded, the previous users stay in force: %s",
                self._path,
                str(exc).splitlines()[0],
            )
            if self._on_reload:
                self._on_reload("refused")
            return
        self._entries = _entries(users.users)
        self._stamp = stamp
        logger.info("users file %s reloaded: %d users", self._path, len(users.users))
        if self._on_reload:
            self._on_reload("reloaded")

    def identify(self, token: str | None) -> Principal | None:
        """The principal owning ``token``; None when it is missing, unknown or disabled."""
        if not token:
            return None
        self._refresh()
        presented = hashlib.sha256(token.encode("utf-8")).digest()
        found: Principal | None = None
        for digest, principal in (*self._entries, *self._fixed):
            if hmac.compare_digest(presented, digest) and found is None:
                found = principal
        return found
