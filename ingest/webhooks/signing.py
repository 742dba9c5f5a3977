"""Webhook signatures: verification of the schemes ingest accepts, and the replay guard.

Pure: the caller passes the clock (``now``, unix seconds) and the secrets in.

Schemes
    *Timestamped HMAC* (pghd's own ``X-Pghd-Signature`` and Terra's ``terra-signature``):
    ``t=<unix seconds>,v1=<hex HMAC-SHA256 over "<t>." + raw body>``. Several ``v1=`` may be
    given (the sender signs with an old and a new secret while it rotates them); one match is
    enough. Other schemes (``v0=``...) are ignored.

    *Svix* (Junction): headers ``svix-id``, ``svix-timestamp`` and ``svix-signature``, the
    last a space-separated list of ``v1,<base64 HMAC-SHA256 over "<id>.<timestamp>." + body>``
    whose key is the base64-decoded part of the ``whsec_...`` secret.

Every scheme refuses a timestamp further than ``tolerance_s`` from now, in the past (stale)
or in the future, and compares digests in constant time (:func:`hmac.compare_digest`). The
timestamped scheme lives in :mod:`pghd.signatures` (the alerts worker signs the feedback to
patients' apps with it) and is re-exported here.

Replays
    :class:`ReplayGuard` refuses a signature it has already accepted while that signature is
    still inside its tolerance window; it forgets it once the timestamp is stale, since from
    then on the tolerance check refuses it anyway. Memory is bounded by ``capacity``; when full,
    the entry closest to expiry is forgotten first. The guard is per ingest process. That
    suffices because (1) a replay outside the window is refused as stale by every instance, so
    the guard only has to cover ``tolerance_s`` seconds; (2) a replay that reaches another
    instance inside the window re-produces readings whose ``event_id`` is derived from the
    sample (vendor, account, kind, time, value), and the processors drop duplicate event ids,
    so nothing is stored twice; and (3) refused items go to the DLQ, where a duplicate is
    harmless. A shared guard would need a store all instances reach with an atomic
    set-if-absent-with-expiry (Redis ``SET key 1 NX EX <tolerance>``); the stack has no such
    store and Kafka is not one, so the cheap option is routing: a load balancer that hashes the
    signature header (or the source path) to pick the instance makes the per-process guard
    cover every instance, with no new component.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
from collections.abc import Sequence

from pghd.signatures import (
    DEFAULT_TOLERANCE_S,
    PGHD_SIGNATURE_HEADER,
    BadSignature,
    ReplayedSignature,
    SignatureRefused,
    StaleSignature,
    Verified,
    check_fresh,
    first_match,
    parse_timestamped,
    sign,
    signature_header,
    verify_timestamped,
)

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "PGHD_SIGNATURE_HEADER",
    "SVIX_ID_HEADER",
    "SVIX_SIGNATURE_HEADER",
    "SVIX_TIMESTAMP_HEADER",
    "TERRA_SIGNATURE_HEADER",
    "BadSignature",
    "ReplayGuard",
    "ReplayedSignature",
    "SignatureRefused",
    "StaleSignature",
    "Verified",
    "parse_timestamped",
    "sign",
    "signature_header",
    "svix_headers",
    "svix_key",
    "svix_sign",
    "verify_svix",
    "verify_timestamped",
]

TERRA_SIGNATURE_HEADER = "terra-signature"
SVIX_ID_HEADER = "svix-id"
SVIX_TIMESTAMP_HEADER = "svix-timestamp"
SVIX_SIGNATURE_HEADER = "svix-signature"
_SVIX_PREFIX = "whsec_"


def svix_key(secret: str) -> bytes:
    """The HMAC key of a Svix secret: the base64-decoded part after ``whsec_``."""
    encoded = secret.removeprefix(_SVIX_PREFIX)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a Svix secret is 'whsec_' followed by base64") from exc


def svix_sign(key: bytes, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """The base64 HMAC-SHA256 of ``"<msg_id>.<timestamp>." + body``."""
    message = f"{msg_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode("ascii")


def svix_headers(
    keys: Sequence[bytes], *, msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Svix headers a sender puts (signed with every key)."""
    signatures = " ".join(
        f"v1,{svix_sign(k, msg_id=msg_id, timestamp=timestamp, body=body)}" for k in keys
    )
    return {
        SVIX_ID_HEADER: msg_id,
        SVIX_TIMESTAMP_HEADER: str(timestamp),
        SVIX_SIGNATURE_HEADER: signatures,
    }


def verify_svix(
    *,
    msg_id: str | None,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    keys: Sequence[bytes],
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> Verified:
    """Check a Svix-signed ``body``. Raises :class:`BadSignature` or :class:`StaleSignature`."""
    for header, value in (
        (SVIX_ID_HEADER, msg_id),
        (SVIX_TIMESTAMP_HEADER, timestamp),
        (SVIX_SIGNATURE_HEADER, signature),
    ):
        if not value:
            raise BadSignature(f"missing {header} header (Svix-signed webhook)")
    assert msg_id is not None and timestamp is not None and signature is not None
    if not timestamp.strip().isdigit():
        raise BadSignature(f"malformed {SVIX_TIMESTAMP_HEADER} header: not unix seconds")
    seconds = int(timestamp.strip())
    presented = [
        value
        for version, sep, value in (p.partition(",") for p in signature.split())
        if sep and version == "v1"
    ]
    if not presented:
        raise BadSignature(f"malformed {SVIX_SIGNATURE_HEADER} header: no 'v1,<base64>' entry")
    expected = [
        svix_sign(k, msg_id=msg_id, timestamp=seconds, body=body).encode("ascii") for k in keys
    ]
    matched = first_match(expected, [p.encode("utf-8") for p in presented])
    if matched is None:
        raise BadSignature(
            f"{SVIX_SIGNATURE_HEADER} does not match the body: no v1 signature was made with "
            "the configured whsec_ secret"
        )
    check_fresh(seconds, now=now, tolerance_s=tolerance_s, name=SVIX_TIMESTAMP_HEADER)
    return Verified(timestamp=seconds, signature=matched.decode("ascii"))


class ReplayGuard:
    """Remembers accepted signatures until they turn stale; bounded to ``capacity`` entries.

    :meth:`reserve` claims a signature before its push is handled; :meth:`release` gives it
    back when handling failed (Kafka down), so the sender's retry of the very same request
    is not taken for a replay. Not thread-safe; one event loop owns it (no ``await`` between
    the check and the claim, so concurrent requests on the loop cannot both claim).
    """

    def __init__(self, *, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.evicted = 0
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    def reserve(self, key: str, *, expires_at: float, now: float) -> bool:
        """Claim ``key`` until ``expires_at``; False when it is already claimed (a replay)."""
        self._prune(now)
        if key in self._expiry:
            return False
        while len(self._expiry) >= self.capacity:
            self._pop_earliest()
            self.evicted += 1
        self._expiry[key] = expires_at
        heapq.heappush(self._heap, (expires_at, key))
        return True

    def release(self, key: str) -> None:
        """Forget ``key`` (its push was not taken, so a resend must not count as a replay)."""
        self._expiry.pop(key, None)

    def _prune(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            expires_at, key = heapq.heappop(self._heap)
            if self._expiry.get(key) == expires_at:
                del self._expiry[key]

    def _pop_earliest(self) -> None:
        while self._heap:
            expires_at, key = heapq.heappop(self._heap)
            if self._expiry.get(key) == expires_at:
                del self._expiry[key]
                return
