"""Bearer-token authentication of people: care-team members and admins.

Both services take ``Authorization: Bearer <token>`` and look the token up in a
:class:`~pghd.access.CredentialBook` (the users file and fixed admin tokens, digests only).
:func:`authenticate_bearer` returns the :class:`~pghd.access.Principal`, optionally only if it
has a given role, notes it as the request's audit agent (:mod:`pghd.audit_trail`), and
otherwise raises the ``401 unauthorized`` problem with ``WWW-Authenticate: Bearer``. Device
sources authenticate differently (ingest's API keys), and a key is no token.

Where an identity provider is configured (:mod:`pghd.service.oidc`), a token shaped like a
JWT is checked as one instead: the principal is the one its claims name (``oidc:<name>``),
a bad token is the same ``401``, and a token whose key cannot be fetched from the provider
now is ``503 idp-unavailable`` with ``Retry-After``. Other tokens are looked up in the
book as before, and with no provider configured nothing changes.
"""

from __future__ import annotations

import logging
from typing import Protocol

from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pghd.access import Principal, Role
from pghd.audit import AuditAgent
from pghd.audit_trail import note_agent
from pghd.problems import ProblemError
from pghd.service.oidc import IdpUnavailable, OidcVerifier, TokenRefused, looks_like_jwt

__all__ = [
    "Credentials",
    "authenticate_bearer",
    "bearer_scheme",
    "idp_unavailable",
    "unauthorized",
]

logger = logging.getLogger(__name__)


class Credentials(Protocol):
    """Who owns a token (:class:`~pghd.access.CredentialBook`)."""

    def identify(self, token: str | None) -> Principal | None:
        """The principal owning ``token``; None when it is missing, unknown or disabled."""
        ...


def bearer_scheme(description: str) -> HTTPBearer:
    """The OpenAPI security scheme of a bearer token; missing tokens reach the route's
    dependency (which answers the problem document) instead of FastAPI's own 403."""
    return HTTPBearer(auto_error=False, description=description)


def unauthorized(detail: str) -> ProblemError:
    """The ``401`` problem asking for a bearer token."""
    return ProblemError(
        status=401, slug="unauthorized", detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def idp_unavailable(retry_after_s: int) -> ProblemError:
    """The ``503`` problem for a JWT whose key cannot be fetched from the provider now."""
    return ProblemError(
        status=503,
        slug="idp-unavailable",
        detail="the identity provider cannot be reached to check this token; retry shortly",
        headers={"Retry-After": str(retry_after_s)},
    )


def authenticate_bearer(
    credentials: Credentials,
    presented: HTTPAuthorizationCredentials | None,
    *,
    role: Role | None = None,
    what: str = "bearer token",
    oidc: OidcVerifier | None = None,
) -> Principal:
    """The principal presenting the bearer token (of ``role`` when given), noted as the
    request's audit agent; the 401 problem when the token is missing, unknown, or of
    someone without ``role``. ``what`` names the token in the problem's detail. With
    ``oidc``, a JWT-shaped token is checked by it (the 503 problem when the provider's
    keys cannot be had now)."""
    token = presented.credentials if presented is not None else None
    principal: Principal | None
    if oidc is not None and token and looks_like_jwt(token):
        try:
            principal = oidc.identify(token)
        except TokenRefused as exc:
            logger.debug("bearer JWT refused: %s", exc)
            raise unauthorized(f"invalid {what}: {exc}") from None
        except IdpUnavailable as exc:
            logger.warning("bearer JWT not checked: %s", exc)
            raise idp_unavailable(exc.retry_after_s) from None
    else:
        principal = credentials.identify(token)
    if principal is None or (role is not None and principal.role is not role):
        raise unauthorized(f"missing {what}" if not token else f"unknown {what}")
    note_agent(
        AuditAgent(name=principal.name, role=principal.role.value, teams=sorted(principal.teams))
    )
    return principal
