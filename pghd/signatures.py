"""Timestamped HMAC signatures: ``X-Pghd-Signature: t=<unix>,v1=<hex HMAC-SHA256>``.

One scheme, signed and checked by one piece of code wherever pghd meets it: ingest verifies
the webhooks vendors push with it (``ingest/webhooks/signing.py`` re-exports it beside the
Svix scheme and the replay guard), the alerts worker signs the feedback it sends to a
patient's app with it (``alerts/feedback/sender.py``), and ``pghd simulate --patient-app``
verifies that feedback with it, as a patient's app would.

``t=<unix seconds>,v1=<hex HMAC-SHA256 over "<t>." + raw body>``. Several ``v1=`` may be
given (a sender signs with an old and a new secret while it rotates them); one match is
enough. Other schemes (``v0=``...) are ignored. A timestamp further than ``tolerance_s``
from now, in the past (stale) or in the future, is refused; digests are compared in constant
time (:func:`hmac.compare_digest`).

Pure: the caller passes the clock (``now``, unix seconds) and the secrets in.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "PGHD_SIGNATURE_HEADER",
    "BadSignature",
    "ReplayedSignature",
    "SignatureRefused",
    "StaleSignature",
    "Verified",
    "check_fresh",
    "first_match",
    "parse_timestamped",
    "sign",
    "signature_header",
    "verify_timestamped",
]

PGHD_SIGNATURE_HEADER = "X-Pghd-Signature"
DEFAULT_TOLERANCE_S = 300


class SignatureRefused(Exception):
    """A request whose signature is not acceptable; ``status`` and ``slug`` say how to answer."""

    status = 401
    slug = "bad-signature"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadSignature(SignatureRefused):
    """Missing, malformed, or not made with any configured secret."""


class StaleSignature(SignatureRefused):
    """Authentic, but its timestamp is outside the tolerance window (past or future)."""

    slug = "stale-signature"

    def __init__(self, detail: str, *, skew_s: float) -> None:
        super().__init__(detail)
        self.skew_s = skew_s


class ReplayedSignature(SignatureRefused):
    """Authentic and fresh, but already accepted once: a replay (409, nothing is stored)."""

    status = 409
    slug = "replayed-signature"


@dataclass(frozen=True, slots=True)
class Verified:
    """An authentic, fresh signature: its timestamp and the signature that matched."""

    timestamp: int
    signature: str

    def expires_at(self, tolerance_s: float) -> float:
        """When this signature turns stale, and so stops needing the replay guard."""
        return self.timestamp + tolerance_s


def sign(secret: bytes, *, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>." + body`` (pghd and Terra ``v1``)."""
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def signature_header(secrets: Sequence[bytes], *, timestamp: int, body: bytes) -> str:
    """A ``t=...,v1=...`` header value signed with every secret (what a sender puts)."""
    parts = [f"t={timestamp}"] + [f"v1={sign(s, timestamp=timestamp, body=body)}" for s in secrets]
    return ",".join(parts)


def parse_timestamped(header: str | None, *, name: str) -> tuple[int, list[str]]:
    """The timestamp and the ``v1`` signatures of a ``t=...,v1=...`` header.

    Raises :class:`BadSignature` naming the header when it is missing or malformed.
    """
    expected = "expected t=<unix seconds>,v1=<hex HMAC-SHA256>"
    if not header:
        raise BadSignature(f"missing {name} header ({expected})")
    timestamps: list[str] = []
    signatures: list[str] = []
    for element in header.split(","):
        prefix, sep, value = element.strip().partition("=")
        if not sep:
            raise BadSignature(f"malformed {name} header: {element.strip()!r} is not key=value")
        if prefix == "t":
            timestamps.append(value.strip())
        elif prefix == "v1":
            signatures.append(value.strip().lower())
    if len(timestamps) != 1 or not timestamps[0].isdigit():
        raise BadSignature(f"malformed {name} header: one integer t= is needed ({expected})")
    if not signatures:
        raise BadSignature(f"malformed {name} header: no v1= signature ({expected})")
    return int(timestamps[0]), signatures


def verify_timestamped(
    header: str | None,
    body: bytes,
    *,
    secrets: Sequence[bytes],
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    name: str = PGHD_SIGNATURE_HEADER,
) -> Verified:
    """Check a ``t=...,v1=...`` signature of ``body`` against every configured secret.

    The signature is checked before the timestamp, so "stale" is only ever said of an
    authentic push. Raises :class:`BadSignature` or :class:`StaleSignature`.
    """
    timestamp, presented = parse_timestamped(header, name=name)
    expected = [sign(s, timestamp=timestamp, body=body).encode("ascii") for s in secrets]
    matched = first_match(expected, [p.encode("utf-8") for p in presented])
    if matched is None:
        raise BadSignature(
            f"{name} does not match the body: no v1 signature was made with the configured "
            "secret (check the secret, and sign the raw body exactly as sent)"
        )
    check_fresh(timestamp, now=now, tolerance_s=tolerance_s, name=name)
    return Verified(timestamp=timestamp, signature=matched.decode("ascii"))


def first_match(expected: Sequence[bytes], presented: Sequence[bytes]) -> bytes | None:
    """The first presented signature equal to an expected one; every pair is compared."""
    found: bytes | None = None
    for candidate in presented:
        for digest in expected:
            if hmac.compare_digest(candidate, digest) and found is None:
                found = candidate
    return found


def check_fresh(timestamp: int, *, now: float, tolerance_s: float, name: str) -> None:
    age = now - timestamp
    if age > tolerance_s:
        raise StaleSignature(
            f"stale signature: the {name} timestamp is {age:.0f} s old, {age - tolerance_s:.0f} s"
            f" beyond the {tolerance_s:g} s tolerance (a replay, or a clock far off)",
            skew_s=age,
        )
    if -age > tolerance_s:
        raise StaleSignature(
            f"stale signature: the {name} timestamp is {-age:.0f} s in the future, "
            f"{-age - tolerance_s:.0f} s beyond the {tolerance_s:g} s tolerance (check the "
            "sender's clock)",
            skew_s=age,
        )
