"""Bearer-token authentication of care-team members: ``Authorization: Bearer <token>``.

Only SHA-256 digests of the tokens are configured (``PGHD_CARE_API_TOKENS``); they are
separate from the device sources' API keys of ingest. A presented token is hashed and
compared with every configured digest in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

__all__ = ["TokenAuthenticator", "hash_token"]


def hash_token(token: str) -> str:
    """The SHA-256 hex digest of a bearer token, as ``PGHD_CARE_API_TOKENS`` stores it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenAuthenticator:
    """Finds the user whose token digest matches a presented bearer token."""

    def __init__(self, digests: Mapping[str, str]) -> None:
        self._entries = [(user, bytes.fromhex(digest)) for user, digest in sorted(digests.items())]

    @property
    def configured(self) -> bool:
        """Whether any token is configured (if not, every request is refused)."""
        return bool(self._entries)

    def identify(self, token: str | None) -> str | None:
        """The user owning ``token``, or ``None`` when it is missing or unknown."""
        if not token:
            return None
        presented = hashlib.sha256(token.encode("utf-8")).digest()
        found: str | None = None
        for user, digest in self._entries:
            if hmac.compare_digest(presented, digest) and found is None:
                found = user
        return found
