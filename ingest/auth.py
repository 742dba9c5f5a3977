"""Who is calling ingest: device sources by API key (admins: :mod:`pghd.service.auth`).

Only SHA-256 digests of keys and tokens are configured. A presented key is hashed and
compared with every configured digest in constant time, so neither the match nor its
position leaks through timing.

Source keys come from ``PGHD_INGEST_API_KEYS`` (JSON ``{"source": "<digest>"}``) and/or a
keys file (``PGHD_INGEST_API_KEYS_FILE``, :class:`SourceKeysFile`) that is read again when
it changes, so a source's key is rotated (two digests for a while) or revoked (removed, or
the source ``disabled``) without a restart. Admins of the patients API present a bearer
token instead: the ``PGHD_INGEST_ADMIN_TOKENS`` holders and the ``admin`` users of the users
file (``PGHD_INGEST_USERS_FILE``, the care-team API's format: :mod:`pghd.access`), checked
as the care-team API checks its users (:func:`pghd.service.auth.authenticate_bearer`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from pghd.contracts import ID_PATTERN
from pghd.watched_file import WatchedJson

__all__ = [
    "API_KEY_HEADER",
    "ApiKeyAuthenticator",
    "SourceKey",
    "SourceKeysFile",
    "hash_key",
]

API_KEY_HEADER = "X-API-Key"

Digest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 hex of a key")]


def hash_key(key: str) -> str:
    """The SHA-256 hex digest of an API key, as ``PGHD_INGEST_API_KEYS`` stores it."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class SourceKey(BaseModel):
    """One source of the keys file: its key digests (several while rotating)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_sha256: Annotated[list[Digest], Field(min_length=1)]
    disabled: bool = Field(default=False, description="refuse every key of this source")


class SourceKeysFile(BaseModel):
    """The keys file: ``{"schema_version": 1, "sources": {"acme": {"key_sha256": [...]}}}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    sources: dict[Annotated[str, Field(pattern=ID_PATTERN)], SourceKey] = Field(
        default_factory=dict
    )


def _match(presented: bytes, entries: list[tuple[str, bytes]]) -> str | None:
    found: str | None = None
    for name, digest in entries:
        if hmac.compare_digest(presented, digest) and found is None:
            found = name
    return found


class ApiKeyAuthenticator:
    """Finds the source whose key digest matches a presented API key."""

    def __init__(
        self,
        digests: Mapping[str, str],
        *,
        keys_file: WatchedJson[SourceKeysFile] | None = None,
    ) -> None:
        self._fixed = [(source, bytes.fromhex(d)) for source, d in sorted(digests.items())]
        self._file = keys_file
        self._read: SourceKeysFile | None = None
        self._from_file: list[tuple[str, bytes]] = []

    def _entries(self) -> list[tuple[str, bytes]]:
        if self._file is not None:
            keys = self._file.current()
            if keys is not self._read:
                self._read = keys
                self._from_file = [
                    (source, bytes.fromhex(digest))
                    for source, entry in sorted(keys.sources.items())
                    if not entry.disabled
                    for digest in entry.key_sha256
                ]
        return [*self._from_file, *self._fixed]

    @property
    def configured(self) -> bool:
        """Whether any key is configured (if not, every request is refused)."""
        return bool(self._entries())

    def identify(self, key: str | None) -> str | None:
        """The source owning ``key``, or ``None`` when the key is missing or unknown."""
        if not key:
            return None
        return _match(hashlib.sha256(key.encode("utf-8")).digest(), self._entries())
