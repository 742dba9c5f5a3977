"""API-key authentication: the ``X-API-Key`` header names the source (vendor) of a request.

Only SHA-256 digests of the keys are configured. A presented key is hashed and compared with
every configured digest in constant time, so neither the match nor its position leaks through
timing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

__all__ = ["API_KEY_HEADER", "ApiKeyAuthenticator", "hash_key"]

API_KEY_HEADER = "X-API-Key"


def hash_key(key: str) -> str:
    """The SHA-256 hex digest of an API key, as ``PGHD_INGEST_API_KEYS`` stores it."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiKeyAuthenticator:
    """Finds the source whose key digest matches a presented API key."""

    def __init__(self, digests: Mapping[str, str]) -> None:
        self._entries = [
            (source, bytes.fromhex(digest)) for source, digest in sorted(digests.items())
        ]

    @property
    def configured(self) -> bool:
        """Whether any key is configured (if not, every request is refused)."""
        return bool(self._entries)

    def identify(self, key: str | None) -> str | None:
        """The source owning ``key``, or ``None`` when the key is missing or unknown."""
        if not key:
            return None
        presented = hashlib.sha256(key.encode("utf-8")).digest()
        found: str | None = None
        for source, digest in self._entries:
            if hmac.compare_digest(presented, digest) and found is None:
                found = source
        return found
