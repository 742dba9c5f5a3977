"""A patient's feedback subscription: where their app takes events, which kinds, the secret.

A patient (their app, with the patient's own token) registers at the care-team API
(``PUT /v1/me/feedback``); the API writes a :class:`FeedbackSubscription` to the compacted
``pghd.feedback-subscriptions.v1``, keyed by the patient id (a tombstone: unsubscribed or
erased). The alerts worker follows that topic into memory and sends events of the consented
kinds only, each to the registered URL, signed with the subscription's secret.

The secret travels on the topic because the sender needs it to sign (an HMAC key cannot be
kept as a digest); the topic's ACL lets only the care-team API (which writes it) and the
alerts worker (which signs with it) read it. It is answered once, by the ``PUT`` that made
it; ``GET`` shows the :class:`FeedbackRegistration`, without it.

Consent is per kind, with its time: an event is sent only for a kind the patient listed, and
only if it happened at or after they listed it (so a first registration does not bring a
backlog of older events).

:func:`url_problem` is the rule a URL must follow, checked at registration and again before
every delivery: ``https``, to a host on the internet; plain ``http`` only to the loopback and
only where the deployment allows it (local and development stacks). Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from pghd import wire
from pghd.contracts import SCHEMA_VERSION, PatientId, UtcDatetime
from pghd.feedback.wording import Kind

__all__ = [
    "MAX_URL_LENGTH",
    "SECRET_PATTERN",
    "FeedbackRegistration",
    "FeedbackSubscription",
    "address_problem",
    "new_secret",
    "read_record",
    "subscribe",
    "url_problem",
]

SECRET_PATTERN = r"^[0-9a-f]{64}$"
MAX_URL_LENGTH = 2048

Url = Annotated[str, Field(min_length=8, max_length=MAX_URL_LENGTH)]


class FeedbackRegistration(BaseModel):
    """What a patient registered, as ``GET /v1/me/feedback`` shows it: no secret."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    patient_id: PatientId
    url: Url
    kinds: dict[Kind, UtcDatetime] = Field(
        min_length=1, description="the kinds consented to, each with when it was consented to"
    )
    created_at: UtcDatetime
    updated_at: UtcDatetime

    def consents(self, kind: Kind, at: datetime) -> bool:
        """Whether an event of ``kind`` that happened at ``at`` may be sent."""
        since = self.kinds.get(kind)
        return since is not None and at >= since


class FeedbackSubscription(FeedbackRegistration):
    """The record on ``pghd.feedback-subscriptions.v1``: the registration and its secret."""

    schema_version: Literal[1] = SCHEMA_VERSION
    secret: Annotated[str, Field(pattern=SECRET_PATTERN, repr=False)] = Field(
        description="64 hex digits; the HMAC-SHA256 key is its ASCII bytes"
    )

    @property
    def key(self) -> bytes:
        """The HMAC key deliveries are signed with."""
        return self.secret.encode("ascii")

    def registration(self) -> FeedbackRegistration:
        """The same, without the secret."""
        return FeedbackRegistration.model_validate(
            self.model_dump(exclude={"secret", "schema_version"})
        )


def new_secret() -> str:
    """A fresh signing secret: 32 random bytes, in hex."""
    return secrets.token_hex(32)


def subscribe(
    patient_id: str,
    *,
    url: str,
    kinds: Iterable[Kind],
    now: datetime,
    secret: str,
    previous: FeedbackRegistration | None = None,
) -> FeedbackSubscription:
    """The subscription a registration makes: kinds the ``previous`` one consented to keep
    their time of consent, new ones are consented to ``now``; one not listed is withdrawn."""
    earlier = {} if previous is None else previous.kinds
    return FeedbackSubscription(
        patient_id=patient_id,
        url=url,
        kinds={kind: earlier.get(kind, now) for kind in sorted(set(kinds))},
        secret=secret,
        created_at=now if previous is None else previous.created_at,
        updated_at=now,
    )


def read_record(key: bytes | None, value: bytes | None) -> tuple[str, FeedbackSubscription | None]:
    """One record of the subscriptions topic: ``(patient id, subscription or None)``;
    raises ``ValueError`` on a record without a key, keyed by another patient, or unreadable."""
    return wire.decode_keyed(
        FeedbackSubscription,
        key,
        value,
        owner=lambda s: s.patient_id,
        what="feedback subscription",
        key_name="patient",
    )


def _loopback_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


TRANSLATED = (
    ipaddress.ip_network("64:ff9b::/96"),  # NAT64 (RFC 6052)
    ipaddress.ip_network("64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215)
    ipaddress.ip_network("2002::/16"),  # 6to4 (RFC 3056)
)
"""IPv6 prefixes that carry an IPv4 address to a translator or relay, which could be the
worker's own network's: refused, whatever the IPv4 address inside."""


def _on_the_internet(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and any(
        address in network for network in TRANSLATED
    ):
        return False
    return address.is_global


MAX_HOST_LENGTH = 253
"""The longest name DNS can look up (in its ASCII form)."""


def url_problem(url: str, *, allow_loopback_http: bool) -> str | None:
    """Why events may not be sent to ``url`` (None: they may): ``https`` to a host on the
    internet; with ``allow_loopback_http``, also ``http`` or ``https`` to the loopback. No
    user or password in it, no fragment; an address given as such must be a global one (not
    private, link-local, multicast...): the worker must not be made to post into its own
    network."""
    if len(url) > MAX_URL_LENGTH:
        return f"the URL is longer than {MAX_URL_LENGTH} characters"
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme not in ("https", "http") or not host:
        return "the URL must be https://host/path"
    if parts.username is not None or parts.password is not None:
        return "the URL must not hold a user or password (the signature authenticates pghd)"
    if parts.fragment:
        return "the URL must not have a #fragment"
    loopback = _loopback_name(host)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        loopback = address.is_loopback
        if not loopback and not _on_the_internet(address):
            return f"{host} is not an address on the internet"
    else:
        try:  # what the resolver will be asked: a label of 1-63, a name of at most 253
            ascii_host = host.rstrip(".").encode("idna")
        except UnicodeError:
            return "the host is not a valid name (a part of it is empty or too long)"
        if len(ascii_host) > MAX_HOST_LENGTH:
            return f"the host name is longer than {MAX_HOST_LENGTH} characters"
    if loopback:
        if not allow_loopback_http:
            return "the loopback takes events only in a local or development deployment"
        return None
    if parts.scheme != "https":
        return "the URL must be https (plain http only to the loopback, in development)"
    return None


def address_problem(addresses: Sequence[str], *, allow_loopback: bool) -> str | None:
    """Why a host that resolved to ``addresses`` may not be posted to (None: it may): every
    address must be on the internet, or the loopback where that is allowed; checked before
    each delivery, since a name may resolve elsewhere than it did at registration."""
    if not addresses:
        return "the host does not resolve"
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if address.is_loopback and allow_loopback:
            continue
        if not _on_the_internet(address):
            return f"the host resolves to {address}, which is not an address on the internet"
    return None
