"""One configured webhook source: which payload and signature scheme, its secrets, its handshake.

Sources are configured as JSON in ``PGHD_INGEST_WEBHOOKS`` (see :mod:`ingest.settings`),
keyed by the source name that appears in the URL (``POST /v1/webhooks/{source}``) and on
every reading it sends::

    {"terra": {"kind": "terra", "secret": "..."},
     "junction": {"kind": "junction", "secret": "whsec_..."},
     "acme": {"kind": "generic", "secret": ["new...", "old..."],
              "handshake": "hub", "verify_token": "..."}}

There are no default secrets. ``secret`` may be a list while a secret is being rotated: a
push signed with any of them is accepted.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ingest.webhooks.signing import svix_key

__all__ = ["Handshake", "SourceKind", "WebhookSource"]


class SourceKind(StrEnum):
    """The payload shape and signature scheme of a source."""

    GENERIC = "generic"  # pghd reading JSON, X-Pghd-Signature
    TERRA = "terra"  # Terra events, terra-signature
    JUNCTION = "junction"  # Junction (Vital) events, Svix signature


class Handshake(StrEnum):
    """How a vendor checks an endpoint with a GET before it sends to it."""

    NONE = "none"
    FITBIT = "fitbit"  # GET ?verify=<code>: 204 when it is ours, 404 when not
    HUB = "hub"  # GET ?hub.mode=subscribe&hub.verify_token=..&hub.challenge=..: echo


class WebhookSource(BaseModel):
    """How to authenticate and read pushes from one source."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: SourceKind
    secret: Annotated[list[Annotated[str, Field(min_length=8)]], Field(min_length=1)] = Field(
        description="signing secret, or several while rotating (Junction: whsec_...)"
    )
    handshake: Handshake = Handshake.NONE
    verify_token: Annotated[str, Field(min_length=1)] | None = Field(
        default=None, description="the code or token the handshake GET must present"
    )
    tolerance_s: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="signature tolerance window; the service default when unset"
    )

    @field_validator("secret", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> WebhookSource:
        if self.handshake is not Handshake.NONE and self.verify_token is None:
            raise ValueError(f"handshake {self.handshake.value!r} needs a verify_token")
        if self.kind is SourceKind.JUNCTION:
            for secret in self.secret:
                svix_key(secret)  # raises ValueError naming the expected form
        return self

    def keys(self) -> list[bytes]:
        """The HMAC keys of the configured secrets."""
        if self.kind is SourceKind.JUNCTION:
            return [svix_key(s) for s in self.secret]
        return [s.encode("utf-8") for s in self.secret]
