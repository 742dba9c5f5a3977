"""Bearer JWTs from an OpenID Connect identity provider, beside the users file's tokens.

Where people sign in at an identity provider (Keycloak, Entra ID, Okta, ...), the services
accept the access tokens it issues: JWTs signed with one of the provider's published keys.
:class:`OidcVerifier` checks a token and answers the :class:`~pghd.access.Principal` it
stands for, exactly like a users-file user (name, role, teams), so every route's role and
team checks and the audit trail apply unchanged. The name is ``oidc:<user name>``: an IdP
user is never mistaken for the users-file user of the same name, in the audit trail nor in
who acknowledged an alert.

A token is accepted only when

- its header's ``alg`` is one of :attr:`OidcSettings.algorithms` (asymmetric only: never
  ``none`` nor an HMAC algorithm, which would let the *public* key sign);
- its unverified ``iss`` is the configured issuer (checked before any key is looked up,
  so tokens of other issuers never make the service call the provider);
- its signature verifies with the key of its ``kid`` in the provider's JWKS, of the same
  algorithm (a key's own ``alg`` wins over the header's);
- ``exp``, ``iat``, ``iss`` and ``aud`` are present, and ``exp``, ``nbf`` (when present),
  ``iat``, ``iss`` and ``aud`` are right, with :attr:`OidcSettings.leeway_s` of clock skew;
- it names a role (:meth:`OidcSettings.role_of`) and valid team names and a user name.

Keys (:class:`JwksCache`) are fetched from ``jwks_url``, else from the ``jwks_uri`` of
``<issuer>/.well-known/openid-configuration``, kept, and fetched again when older than
``jwks_refresh_s`` or when a token names a ``kid`` the cache does not know (key rotation),
but never twice within ``jwks_min_refresh_s``: a flood of made-up ``kid``\\ s costs the
provider one request per interval. When the provider cannot be reached the keys already
fetched keep working; a token that needs a key the service has not got is answered ``503
idp-unavailable`` with ``Retry-After`` (:class:`IdpUnavailable`): the token may be good,
and a ``401`` would send a client with a good token to sign in again for nothing. After a
successful fetch an unknown ``kid`` is a ``401`` (:class:`TokenRefused`).

The checks run in the thread pool (the services' authentication dependencies are plain
functions), so fetching is synchronous; one thread fetches at a time while the others keep
using the keys they have.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlsplit

import httpx
import jwt
from prometheus_client import CollectorRegistry, Counter
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from pghd.access import Principal, Role

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "NAME_PREFIX",
    "IdpUnavailable",
    "JwksCache",
    "OidcSettings",
    "OidcVerifier",
    "TokenRefused",
    "jwks_fetches_counter",
    "looks_like_jwt",
    "verifier_for",
]

logger = logging.getLogger(__name__)

ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
"""The signature algorithms a provider's public keys verify (what ``algorithms`` may hold)."""

NAME_PREFIX = "oidc:"
"""Put before the IdP's user name in the principal's name (and so in the audit trail)."""

_ROLE_ORDER = (Role.VIEWER, Role.CLINICIAN, Role.ADMIN)
# Principal names go where ids go (acknowledged_by, the audit agent): pghd.contracts.ID_PATTERN
# with the prefix, at most 128 characters in all.
_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,122}$")
_TEAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
_MAX_DOCUMENT_BYTES = 1 << 20


def looks_like_jwt(token: str) -> bool:
    """Whether ``token`` has the shape of a JWS compact serialisation: three base64url parts
    (the last, the signature, may be empty: ``alg: none``) and a JSON object for a header.
    The users file's tokens (``secrets.token_urlsafe``) have no dots, so they never do."""
    if not _JWT_SHAPE.match(token):
        return False
    head = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(header, dict)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _checked_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if not parts.hostname or parts.scheme not in ("https", "http"):
        raise ValueError(f"{what} must be an https URL, not {url!r}")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ValueError(f"{what} must be https (plain http only on the loopback): {url!r}")
    return url


class OidcSettings(BaseSettings):
    """Which identity provider's tokens a service accepts and how their claims map.

    Read from ``PGHD_OIDC_*``; a service's own ``PGHD_<SERVICE>_OIDC_*`` (e.g.
    ``PGHD_CARE_API_OIDC_AUDIENCE``) overrides each variable (:meth:`from_env`). Without an
    ``issuer`` no token is taken for a JWT and nothing changes.
    """

    model_config = SettingsConfigDict(env_prefix="PGHD_OIDC_", extra="ignore", frozen=True)

    issuer: str | None = Field(
        default=None,
        description="the issuer URL, exactly as in the tokens' iss claim; unset: no OIDC",
    )
    audience: str | None = Field(
        default=None, description="the aud the tokens must carry (required with an issuer)"
    )
    jwks_url: str | None = Field(
        default=None,
        description="the provider's JWKS; unset: the jwks_uri of its discovery document",
    )
    algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "ES256"],
        description="signature algorithms accepted (asymmetric only), as JSON",
    )
    leeway_s: float = Field(
        default=60.0, ge=0, le=600, description="clock skew allowed on exp, nbf and iat"
    )
    role_claim: str = Field(
        default="pghd_role",
        description="the claim holding the role (a dotted path reaches into objects:"
        " realm_access.roles)",
    )
    role_map: dict[str, Role] = Field(
        default_factory=dict,
        description="IdP role or group name -> pghd role, as JSON; when set, role_claim may"
        " be a list and the highest mapped role wins; unset: the claim is a pghd role name",
    )
    teams_claim: str = Field(
        default="pghd_teams", description="the claim listing the care teams (absent: none)"
    )
    name_claim: str = Field(
        default="preferred_username", description="the claim naming the user (absent: sub)"
    )
    jwks_refresh_s: float = Field(
        default=300.0, gt=0, description="keys older than this are fetched again"
    )
    jwks_min_refresh_s: float = Field(
        default=10.0,
        ge=0,
        description="never fetch the keys twice within this (unknown kids, failures)",
    )
    http_timeout_s: float = Field(
        default=5.0, gt=0, description="timeout of a request to the provider"
    )

    @classmethod
    def from_env(cls, service_prefix: str) -> OidcSettings:
        """The settings of the service whose variables start with ``service_prefix``
        (``PGHD_CARE_API_``): its ``<prefix>OIDC_*``, each falling back to ``PGHD_OIDC_*``."""
        own = EnvSettingsSource(cls, env_prefix=f"{service_prefix}OIDC_")()
        return cls(**own)

    @field_validator("role_map")
    @classmethod
    def _check_role_map(cls, value: dict[str, Role]) -> dict[str, Role]:
        patients = sorted(name for name, role in value.items() if role not in _ROLE_ORDER)
        if patients:
            raise ValueError(
                f"role_map maps {patients} to {Role.PATIENT.value!r}: an identity provider"
                " vouches for care-team members only; patients hold their own patient tokens"
            )
        return value

    @field_validator("algorithms")
    @classmethod
    def _check_algorithms(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one algorithm")
        for name in value:
            if name not in ASYMMETRIC_ALGORITHMS:
                raise ValueError(
                    f"algorithm {name!r} is not accepted: only signatures a public key verifies"
                    f" ({', '.join(sorted(ASYMMETRIC_ALGORITHMS))}); never none or HS*"
                )
        return value

    @model_validator(mode="after")
    def _check_issuer(self) -> Self:
        if self.issuer is None:
            return self
        _checked_url(self.issuer, "the issuer")
        if self.jwks_url is not None:
            _checked_url(self.jwks_url, "jwks_url")
        if not self.audience:
            raise ValueError("an OIDC issuer needs an audience (the aud the tokens carry)")
        return self

    @property
    def enabled(self) -> bool:
        """Whether an issuer is configured (else bearer tokens are the users file's only)."""
        return self.issuer is not None

    def role_of(self, claims: Mapping[str, Any]) -> Role | None:
        """The role the claims give: the pghd role named by ``role_claim``, or, with a
        ``role_map``, the highest role any of the claim's names maps to; None if none."""
        value = claim(claims, self.role_claim)
        if not self.role_map:  # a care-team role by name; "patient" is none (patient tokens)
            return Role(value) if isinstance(value, str) and value in _ROLE_ORDER else None
        names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        mapped = {self.role_map[n] for n in names if isinstance(n, str) and n in self.role_map}
        return max(mapped, key=_ROLE_ORDER.index, default=None)


def claim(claims: Mapping[str, Any], path: str) -> Any:
    """The claim ``path``, a top-level name or a dotted path into objects
    (``realm_access.roles``); None when absent."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


class TokenRefused(Exception):
    """The token is not one to accept (answered 401); the message says why."""


class IdpUnavailable(Exception):
    """The token needs a key the service has not got and the provider cannot be reached
    now (answered 503); ``retry_after_s``: when the next fetch may be tried."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class _FetchFailed(Exception):
    pass


@dataclass(frozen=True)
class _Key:
    kid: str | None
    alg: str
    jwk: jwt.PyJWK


@dataclass(frozen=True)
class _KeySet:
    keys: tuple[_Key, ...]  # a JWK without an alg once per accepted algorithm of its type
    published: int  # how many usable JWKs the provider published
    fetched_at: float

    def candidates(self, kid: str | None) -> list[_Key]:
        """The keys a token of ``kid`` may be verified with (a token without a ``kid``:
        those of the only key the provider publishes, if it publishes one)."""
        if kid is None:
            return list(self.keys) if self.published == 1 else []
        return [k for k in self.keys if k.kid == kid]


class JwksCache:
    """The provider's signing keys, fetched when needed, at most every ``min_refresh_s``."""

    def __init__(
        self,
        settings: OidcSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_fetch: Callable[[str], None] | None = None,
    ) -> None:
        if settings.issuer is None:
            raise ValueError("no OIDC issuer configured")
        self._settings = settings
        self._issuer = settings.issuer
        self._transport = transport
        self._clock = clock
        self._on_fetch = on_fetch
        self._jwks_url = settings.jwks_url
        self._set: _KeySet | None = None
        self._failed = False  # the last fetch failed (unknown kids: 503 rather than 401)
        self._attempted_at: float | None = None
        self._fetching = threading.Lock()

    def key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The key verifying a token of ``kid`` and ``alg``; :class:`TokenRefused` when the
        provider has no such key, :class:`IdpUnavailable` when that cannot be known now."""
        current = self._set
        known = [] if current is None else current.candidates(kid)
        if current is not None and known:
            if self._clock() - current.fetched_at >= self._settings.jwks_refresh_s:
                # stale: refresh unless another thread does; meanwhile the keys stay good
                if self._fetching.acquire(blocking=False):
                    try:
                        self._refresh()
                    finally:
                        self._fetching.release()
                if self._set is not current and not self._failed:
                    known = self._set.candidates(kid) if self._set is not None else []
        else:
            with self._fetching:  # wait for a fetch under way, then look again
                if self._set is None or not self._set.candidates(kid):
                    self._refresh()
            known = [] if self._set is None else self._set.candidates(kid)
            if not known and (self._failed or self._set is None):
                raise IdpUnavailable(
                    "the identity provider's keys cannot be fetched now",
                    retry_after_s=self._retry(),
                )
        if not known:
            raise TokenRefused(f"no key {kid!r} at the identity provider" if kid else "no kid")
        for candidate in known:
            if candidate.alg == alg:
                return candidate.jwk
        raise TokenRefused(f"key {kid!r} is not a {alg} key")

    def _retry(self) -> int:
        since = 0.0 if self._attempted_at is None else self._clock() - self._attempted_at
        return max(1, math.ceil(self._settings.jwks_min_refresh_s - since))

    def _refresh(self) -> None:
        """Fetch the keys unless a fetch was tried within ``min_refresh_s`` (caller holds
        the fetching lock). A failure keeps the keys there are."""
        now = self._clock()
        if (
            self._attempted_at is not None
            and now - self._attempted_at < self._settings.jwks_min_refresh_s
        ):
            return
        self._attempted_at = now
        try:
            keys, published = self._fetch()
        except _FetchFailed as exc:
            self._failed = True
            logger.warning("identity provider keys not fetched, keeping the cached ones: %s", exc)
            if self._on_fetch:
                self._on_fetch("failed")
            return
        self._set, self._failed = _KeySet(keys, published, now), False
        logger.info("identity provider keys fetched: %d usable", published)
        if self._on_fetch:
            self._on_fetch("fetched")

    def _get_json(self, client: httpx.Client, url: str) -> dict[str, Any]:
        try:
            response = client.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            if len(response.content) > _MAX_DOCUMENT_BYTES:
                raise _FetchFailed(f"{url}: larger than {_MAX_DOCUMENT_BYTES} bytes")
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise _FetchFailed(f"{url}: {exc}") from exc
        if not isinstance(document, dict):
            raise _FetchFailed(f"{url}: not a JSON object")
        return document

    def _fetch(self) -> tuple[tuple[_Key, ...], int]:
        with httpx.Client(
            timeout=self._settings.http_timeout_s,
            transport=self._transport,
            follow_redirects=False,
        ) as client:
            if self._jwks_url is None:
                discovery = f"{self._issuer.rstrip('/')}/.well-known/openid-configuration"
                document = self._get_json(client, discovery)
                if document.get("issuer") != self._issuer:
                    raise _FetchFailed(
                        f"{discovery} names issuer {document.get('issuer')!r}, not {self._issuer!r}"
                    )
                uri = document.get("jwks_uri")
                try:
                    self._jwks_url = _checked_url(str(uri), "the discovered jwks_uri")
                except ValueError as exc:
                    raise _FetchFailed(str(exc)) from exc
            keys = self._get_json(client, self._jwks_url).get("keys")
        if not isinstance(keys, list):
            raise _FetchFailed(f"{self._jwks_url}: no keys list")
        usable = [k for k in keys if self._usable(k)]
        return tuple(key for jwk in usable for key in self._prepared(jwk)), len(usable)

    def _usable(self, jwk: Any) -> bool:
        """A public signing key of an accepted algorithm (an ``oct`` key, a symmetric
        secret, has no business in a JWKS and is never used)."""
        return (
            isinstance(jwk, dict)
            and jwk.get("kty") in ("RSA", "EC", "OKP")
            and jwk.get("use", "sig") == "sig"
            and ("alg" not in jwk or jwk["alg"] in self._settings.algorithms)
        )

    def _prepared(self, jwk: dict[str, Any]) -> list[_Key]:
        """The key for its own ``alg``, or for each accepted algorithm it can do."""
        kid = jwk.get("kid")
        algorithms = [jwk["alg"]] if "alg" in jwk else self._settings.algorithms
        prepared: list[_Key] = []
        for alg in algorithms:
            try:
                key = jwt.PyJWK(jwk, algorithm=alg)
                key.Algorithm.prepare_key(key.key)  # an RSA key for ES256 fails here
            except (jwt.PyJWTError, ValueError, TypeError):
                continue
            prepared.append(_Key(kid if isinstance(kid, str) else None, alg, key))
        if not prepared:
            logger.warning("identity provider key %r skipped: no accepted algorithm", kid)
        return prepared


def check_lifetime(claims: Mapping[str, Any], *, now: float, leeway_s: float) -> None:
    """Raise :class:`TokenRefused` unless ``now`` is within the token's lifetime: before
    ``exp``, not before ``nbf`` or ``iat`` (each with ``leeway_s`` of clock skew)."""
    moments: dict[str, float] = {}
    for name in ("exp", "nbf", "iat"):
        value = claims.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TokenRefused(f"the {name!r} claim must be a number of seconds")
        moments[name] = float(value)
    if "exp" in moments and moments["exp"] <= now - leeway_s:
        raise TokenRefused("the token has expired (exp)")
    for name in ("nbf", "iat"):
        if name in moments and moments[name] > now + leeway_s:
            raise TokenRefused(f"the token is not yet valid ({name})")


class OidcVerifier:
    """Checks bearer JWTs of the configured issuer (see the module docstring)."""

    def __init__(
        self,
        settings: OidcSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
        on_fetch: Callable[[str], None] | None = None,
    ) -> None:
        """``clock`` paces the key cache; ``now`` (seconds since the epoch) is what the
        token's ``exp``, ``nbf`` and ``iat`` are checked against."""
        self.settings = settings
        self.keys = JwksCache(settings, transport=transport, clock=clock, on_fetch=on_fetch)
        self._now = now

    def identify(self, token: str) -> Principal:
        """The principal the token stands for; :class:`TokenRefused` or
        :class:`IdpUnavailable` otherwise."""
        settings = self.settings
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"not a JWT: {exc}") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in settings.algorithms:
            raise TokenRefused(f"algorithm {alg!r} is not accepted")
        if unverified.get("iss") != settings.issuer:
            raise TokenRefused("not issued by the configured identity provider")
        kid = header.get("kid")
        key = self.keys.key(kid if isinstance(kid, str) else None, alg)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=settings.algorithms,
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway_s,
                options={
                    "require": ["exp", "iat", "iss", "aud"],
                    "enforce_minimum_key_length": True,
                    # checked below against ``now``, with the leeway
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise TokenRefused(str(exc)) from exc
        check_lifetime(claims, now=self._now(), leeway_s=settings.leeway_s)
        return self.principal_of(claims)

    def principal_of(self, claims: Mapping[str, Any]) -> Principal:
        """The principal of verified claims: ``oidc:<name>``, the role, the teams."""
        settings = self.settings
        role = settings.role_of(claims)
        if role is None:
            raise TokenRefused(f"no pghd role in the {settings.role_claim!r} claim")
        name = claim(claims, settings.name_claim)
        if name is None:
            name = claims.get("sub")
        if not isinstance(name, str) or not _USER_NAME.match(name):
            raise TokenRefused(f"no usable user name in {settings.name_claim!r} or 'sub'")
        teams = claim(claims, settings.teams_claim)
        if teams is None:
            teams = []
        elif isinstance(teams, str):
            teams = [teams]
        if not isinstance(teams, list) or not all(
            isinstance(t, str) and _TEAM.match(t) for t in teams
        ):
            raise TokenRefused(f"the {settings.teams_claim!r} claim is not a list of team names")
        return Principal(f"{NAME_PREFIX}{name}", role, frozenset(teams))


def jwks_fetches_counter(registry: CollectorRegistry) -> Counter:
    """The counter of fetches of the provider's keys, by outcome, in ``registry``."""
    return Counter(
        "oidc_jwks_fetches",
        "Fetches of the identity provider's keys, by outcome (fetched, failed: kept the"
        " cached ones)",
        ["outcome"],
        registry=registry,
    )


def verifier_for(settings: OidcSettings, fetches: Counter) -> OidcVerifier | None:
    """The verifier an API uses, counting its key fetches in ``fetches``; None when no
    issuer is configured (static tokens only)."""
    if not settings.enabled:
        return None
    return OidcVerifier(settings, on_fetch=lambda outcome: fetches.labels(outcome=outcome).inc())
