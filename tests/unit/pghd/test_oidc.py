"""Bearer JWTs of an identity provider: what is accepted, what is refused, and the keys.

The provider is :class:`tests.oidc_idp.LoopbackIdp`, real HTTP on the loopback with keys made
per test; the cache's clock is a fake one, so refresh intervals pass when a test says so.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import ValidationError

from pghd.access import CredentialBook, Principal, Role, hash_token
from pghd.problems import ProblemError
from pghd.service.auth import authenticate_bearer
from pghd.service.oidc import (
    IdpUnavailable,
    OidcSettings,
    OidcVerifier,
    TokenRefused,
    looks_like_jwt,
)
from tests.clock import ANCHOR
from tests.oidc_idp import AUDIENCE, LoopbackIdp, serving_idp

NOW = int(ANCHOR.timestamp())  # the verifier's and the provider's clock, pinned


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def idp() -> Iterator[LoopbackIdp]:
    with serving_idp() as idp:
        idp.now = lambda: NOW
        yield idp


@pytest.fixture
def clock() -> Clock:
    return Clock()


def settings_of(idp: LoopbackIdp, **changes: Any) -> OidcSettings:
    values: dict[str, Any] = {
        "issuer": idp.issuer,
        "audience": AUDIENCE,
        "jwks_url": idp.jwks_url,
        "jwks_refresh_s": 300,
        "jwks_min_refresh_s": 10,
    }
    return OidcSettings(**(values | changes))


def verifier_of(idp: LoopbackIdp, clock: Clock, **changes: Any) -> OidcVerifier:
    return OidcVerifier(settings_of(idp, **changes), clock=clock, now=lambda: NOW)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forged(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = b"" if sign is None else sign(signing_input.encode())
    return f"{signing_input}.{_b64(signature)}"


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_a_valid_token_is_the_principal_it_names(idp: LoopbackIdp, clock: Clock, alg: str) -> None:
    key = idp.add_key(alg)
    verifier = verifier_of(idp, clock)
    principal = verifier.identify(idp.token(key))
    assert principal == Principal("oidc:nurse-a", Role.CLINICIAN, frozenset({"ward-a"}))
    admin = verifier.identify(idp.token(key, pghd_role="admin", pghd_teams=None))
    assert (admin.role, admin.teams) == (Role.ADMIN, frozenset())


def test_the_keys_are_found_through_discovery(idp: LoopbackIdp, clock: Clock) -> None:
    verifier = verifier_of(idp, clock, jwks_url=None)
    assert verifier.identify(idp.token()).name == "oidc:nurse-a"
    assert idp.requests == [
        "/realms/pghd/.well-known/openid-configuration",
        "/realms/pghd/protocol/openid-connect/certs",
    ]


def test_a_discovery_document_of_another_issuer_is_not_trusted(clock: Clock) -> None:
    with serving_idp(discovery_issuer="https://evil.example.org/realms/pghd") as idp:
        idp.now = lambda: NOW
        verifier = verifier_of(idp, clock, jwks_url=None)
        with pytest.raises(IdpUnavailable):
            verifier.identify(idp.token())
        assert not any(r.endswith("/certs") for r in idp.requests)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"exp": NOW - 120}, "expired"),
        ({"nbf": NOW + 300}, "not yet valid"),
        ({"iat": NOW + 300}, "not yet valid"),
        ({"aud": "another-api"}, "audience"),
        ({"exp": None}, "exp"),
        ({"iat": None}, "iat"),
        ({"aud": None}, "aud"),
        ({"pghd_role": None}, "role"),
        ({"pghd_role": "superuser"}, "role"),
        ({"pghd_teams": "ward a"}, "team"),
        ({"pghd_teams": [["ward-a"]]}, "team"),
        ({"preferred_username": "Nurse A", "sub": None}, "user name"),
    ],
    ids=lambda v: v if isinstance(v, str) else ",".join(v),
)
def test_a_token_with_wrong_claims_is_refused(
    idp: LoopbackIdp, clock: Clock, changes: dict[str, Any], reason: str
) -> None:
    verifier = verifier_of(idp, clock)
    with pytest.raises(TokenRefused, match=f"(?i){reason}"):
        verifier.identify(idp.token(**changes))


def test_the_leeway_allows_some_clock_skew(idp: LoopbackIdp, clock: Clock) -> None:
    verifier = verifier_of(idp, clock, leeway_s=60)
    now = NOW
    assert verifier.identify(idp.token(exp=now - 20, iat=now - 320))
    assert verifier.identify(idp.token(nbf=now + 20, iat=now + 20))
    strict = verifier_of(idp, clock, leeway_s=0)
    with pytest.raises(TokenRefused, match="expired"):
        strict.identify(idp.token(exp=now - 20))


def test_another_issuers_token_is_refused_without_asking_the_provider(
    idp: LoopbackIdp, clock: Clock
) -> None:
    verifier = verifier_of(idp, clock)
    with pytest.raises(TokenRefused, match="not issued by"):
        verifier.identify(idp.token(iss="https://other.example.org/realms/pghd"))
    assert idp.requests == []


def test_alg_none_is_refused(idp: LoopbackIdp, clock: Clock) -> None:
    verifier = verifier_of(idp, clock)
    unsigned = _forged({"alg": "none", "typ": "JWT"}, idp.claims())
    assert looks_like_jwt(unsigned)
    with pytest.raises(TokenRefused, match="algorithm 'none'"):
        verifier.identify(unsigned)
    assert idp.requests == []


def test_hs256_signed_with_the_public_key_is_refused(idp: LoopbackIdp, clock: Clock) -> None:
    """The classic confusion: the public key (PEM or JWK) used as an HMAC secret."""
    verifier = verifier_of(idp, clock)
    verifier.identify(idp.token())  # the keys are cached
    key = idp.keys[0]
    pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    secrets = [pem, json.dumps(idp.jwks()["keys"][0]).encode()]
    for secret in secrets:
        forged = _forged(
            {"alg": "HS256", "typ": "JWT", "kid": key.kid},
            idp.claims(pghd_role="admin"),
            lambda data, secret=secret: hmac.new(secret, data, hashlib.sha256).digest(),
        )
        with pytest.raises(TokenRefused, match="algorithm 'HS256'"):
            verifier.identify(forged)
    # and were HS256 configured by mistake, the settings refuse it
    with pytest.raises(ValidationError, match="never none or HS"):
        settings_of(idp, algorithms=["RS256", "HS256"])


def test_a_tampered_payload_is_refused(idp: LoopbackIdp, clock: Clock) -> None:
    verifier = verifier_of(idp, clock)
    head, _, signature = idp.token().split(".")
    raised = _b64(json.dumps(idp.claims(pghd_role="admin", pghd_teams=["ward-b"])).encode())
    with pytest.raises(TokenRefused, match="Signature verification failed"):
        verifier.identify(f"{head}.{raised}.{signature}")


def test_a_token_signed_by_a_key_the_provider_never_published_is_refused(
    idp: LoopbackIdp, clock: Clock
) -> None:
    verifier = verifier_of(idp, clock)
    impostor = LoopbackIdp(issuer=idp.issuer)
    impostor.add_key("RS256", kid=idp.keys[0].kid)  # same kid, another key
    with pytest.raises(TokenRefused, match="Signature verification failed"):
        verifier.identify(impostor.token())


def test_an_unknown_kid_refreshes_once_then_is_refused(idp: LoopbackIdp, clock: Clock) -> None:
    verifier = verifier_of(idp, clock)
    verifier.identify(idp.token())
    assert len(idp.requests) == 1
    clock.now += 11
    with pytest.raises(TokenRefused, match="no key 'made-up'"):
        verifier.identify(idp.token(kid="made-up"))
    assert len(idp.requests) == 2, "one refresh for the unknown kid"
    for n in range(50):  # a flood of made-up kids within the interval: no more fetches
        with pytest.raises(TokenRefused):
            verifier.identify(idp.token(kid=f"made-up-{n}"))
    assert len(idp.requests) == 2
    assert verifier.identify(idp.token()).name == "oidc:nurse-a", "known keys still work"
    clock.now += 11
    with pytest.raises(TokenRefused):
        verifier.identify(idp.token(kid="made-up-again"))
    assert len(idp.requests) == 3


def test_a_rotated_key_is_accepted_after_a_refresh(idp: LoopbackIdp, clock: Clock) -> None:
    verifier = verifier_of(idp, clock)
    old = idp.keys[0]
    verifier.identify(idp.token(old))
    clock.now += 11
    new = idp.add_key("ES256")
    assert verifier.identify(idp.token(new)).name == "oidc:nurse-a"
    assert verifier.identify(idp.token(old)).name == "oidc:nurse-a", "both while rotating"
    # the old key withdrawn: refused once the keys are fetched again (they grew stale)
    idp.remove_key(old.kid)
    clock.now += 301
    with pytest.raises(TokenRefused, match="no key"):
        verifier.identify(idp.token(old))
    assert verifier.identify(idp.token(new)).name == "oidc:nurse-a"


def test_cached_keys_work_while_the_provider_is_down(idp: LoopbackIdp, clock: Clock) -> None:
    outcomes: list[str] = []
    verifier = OidcVerifier(
        settings_of(idp), clock=clock, now=lambda: NOW, on_fetch=outcomes.append
    )
    verifier.identify(idp.token())
    token_after = idp.add_key("RS256")
    idp.stop()
    clock.now += 301  # the keys are stale: the refresh fails, they stay in force
    assert verifier.identify(idp.token()).name == "oidc:nurse-a"
    with pytest.raises(IdpUnavailable) as raised:  # a key it has not got: cannot know
        verifier.identify(idp.token(token_after))
    assert 1 <= raised.value.retry_after_s <= 10
    assert outcomes == ["fetched", "failed"]


def test_before_any_fetch_a_down_provider_is_unavailable_not_a_refusal(clock: Clock) -> None:
    with serving_idp() as idp:
        idp.now = lambda: NOW
        verifier = verifier_of(idp, clock)
        idp.stop()
        with pytest.raises(IdpUnavailable):
            verifier.identify(idp.token())
        with pytest.raises(IdpUnavailable):  # within the interval: no new attempt
            verifier.identify(idp.token())


def test_a_token_without_kid_uses_the_only_key(idp: LoopbackIdp, clock: Clock) -> None:
    verifier = verifier_of(idp, clock)
    assert verifier.identify(idp.token(kid=None)).name == "oidc:nurse-a"
    clock.now += 11
    idp.add_key("RS256")
    clock.now += 301
    with pytest.raises(TokenRefused, match="no kid"):
        verifier.identify(idp.token(kid=None))


def test_a_token_of_an_algorithm_its_key_is_not_for_is_refused(
    idp: LoopbackIdp, clock: Clock
) -> None:
    rsa_key = idp.keys[0]
    verifier = verifier_of(idp, clock, algorithms=["RS256", "PS256", "ES256"])
    verifier.identify(idp.token())
    ps256 = jwt.encode(
        idp.claims(), rsa_key.private, algorithm="PS256", headers={"kid": rsa_key.kid}
    )
    with pytest.raises(TokenRefused, match="not a PS256 key"):
        verifier.identify(ps256)


def test_roles_mapped_from_a_list_claim(idp: LoopbackIdp, clock: Clock) -> None:
    verifier = verifier_of(
        idp,
        clock,
        role_claim="realm_access.roles",
        role_map={"pghd-viewer": "viewer", "pghd-clinician": "clinician"},
        teams_claim="groups",
    )
    both = {"roles": ["offline_access", "pghd-viewer", "pghd-clinician"]}
    principal = verifier.identify(idp.token(realm_access=both, groups=["ward-a", "cardio"]))
    assert (principal.role, principal.teams) == (Role.CLINICIAN, frozenset({"ward-a", "cardio"}))
    viewer = verifier.identify(idp.token(realm_access={"roles": ["pghd-viewer"]}))
    assert viewer.role is Role.VIEWER
    with pytest.raises(TokenRefused, match="role"):  # pghd_role is not read with a map
        verifier.identify(idp.token(realm_access={"roles": ["offline_access"]}))


def test_the_user_name_falls_back_to_sub(idp: LoopbackIdp, clock: Clock) -> None:
    verifier = verifier_of(idp, clock)
    principal = verifier.identify(idp.token(preferred_username=None))
    assert principal.name == "oidc:6b1c9b7e-8a83-4a4e-9d1c-0d9f3f0a1b2c"


def test_settings_refuse_what_would_be_unsafe() -> None:
    base: dict[str, Any] = {"issuer": "https://idp.example.org/realms/pghd", "audience": AUDIENCE}
    assert OidcSettings(**base).algorithms == ["RS256", "ES256"]
    assert OidcSettings(**base).leeway_s == 60
    for algorithms in (["none"], ["HS256"], ["HS512"], []):
        with pytest.raises(ValidationError):
            OidcSettings(**base, algorithms=algorithms)
    with pytest.raises(ValidationError, match="audience"):
        OidcSettings(issuer=base["issuer"])
    with pytest.raises(ValidationError, match="https"):
        OidcSettings(issuer="http://idp.example.org/realms/pghd", audience=AUDIENCE)
    with pytest.raises(ValidationError, match="https"):
        OidcSettings(**base, jwks_url="http://idp.example.org/certs")
    assert not OidcSettings().enabled


def test_each_service_reads_its_own_variables_then_the_shared_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from alerts.api.settings import CareApiSettings
    from ingest.settings import IngestSettings

    monkeypatch.setenv("PGHD_OIDC_ISSUER", "https://idp.example.org/realms/pghd")
    monkeypatch.setenv("PGHD_OIDC_AUDIENCE", "pghd")
    monkeypatch.setenv("PGHD_OIDC_LEEWAY_S", "30")
    monkeypatch.setenv("PGHD_CARE_API_OIDC_AUDIENCE", "pghd-care-api")
    monkeypatch.setenv("PGHD_CARE_API_OIDC_ROLE_MAP", '{"nurses": "clinician"}')
    monkeypatch.setenv("PGHD_INGEST_OIDC_ALGORITHMS", '["ES256"]')
    care = CareApiSettings().oidc
    assert (care.issuer, care.audience, care.leeway_s) == (
        "https://idp.example.org/realms/pghd",
        "pghd-care-api",
        30,
    )
    assert care.role_map == {"nurses": Role.CLINICIAN}
    assert care.algorithms == ["RS256", "ES256"]
    ingest = IngestSettings().oidc
    assert (ingest.audience, ingest.algorithms) == ("pghd", ["ES256"])
    monkeypatch.setenv("PGHD_INGEST_OIDC_ALGORITHMS", '["HS256"]')
    with pytest.raises(ValidationError):
        IngestSettings()


def test_only_jwt_shaped_tokens_are_taken_for_jwts(idp: LoopbackIdp) -> None:
    assert looks_like_jwt(idp.token())
    for static in ("nurse-a-token", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30", "x" * 43, ""):
        assert not looks_like_jwt(static), static


def _bearer(token: str) -> HTTPAuthorizationCredentials:
    return HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)


def test_the_shared_bearer_auth_takes_both_kinds_of_token(idp: LoopbackIdp, clock: Clock) -> None:
    book = CredentialBook(None, fixed={"ops": hash_token("ops-token")})
    verifier = verifier_of(idp, clock)
    assert authenticate_bearer(book, _bearer("ops-token"), oidc=verifier).name == "ops"
    assert authenticate_bearer(book, _bearer(idp.token()), oidc=verifier).name == "oidc:nurse-a"
    with pytest.raises(ProblemError) as refused:
        authenticate_bearer(book, _bearer(idp.token(aud="x")), oidc=verifier)
    assert refused.value.status == 401 and "invalid bearer token" in str(refused.value.detail)
    with pytest.raises(ProblemError) as not_admin:
        authenticate_bearer(book, _bearer(idp.token()), oidc=verifier, role=Role.ADMIN)
    assert not_admin.value.status == 401
    admin = idp.token(pghd_role="admin", preferred_username="lead")
    assert authenticate_bearer(book, _bearer(admin), oidc=verifier, role=Role.ADMIN).name == (
        "oidc:lead"
    )
    # the provider's keys out of reach: 503 with Retry-After, not 401
    unknown = idp.add_key("RS256")
    idp.stop()
    clock.now += 11
    with pytest.raises(ProblemError) as unavailable:
        authenticate_bearer(book, _bearer(idp.token(unknown)), oidc=verifier)
    assert unavailable.value.status == 503
    assert unavailable.value.headers is not None and unavailable.value.headers["Retry-After"]


def test_without_an_issuer_a_jwt_is_just_an_unknown_token(idp: LoopbackIdp) -> None:
    """No provider configured: bearer auth is what it was, and nobody asks the provider."""
    token = idp.token()
    book = CredentialBook(None, fixed={"ops": hash_token(token)})
    assert authenticate_bearer(book, _bearer(token)).name == "ops", "a digest, as ever"
    with pytest.raises(ProblemError) as refused:
        authenticate_bearer(CredentialBook(None), _bearer(token))
    assert refused.value.status == 401 and refused.value.detail == "unknown bearer token"
    assert idp.requests == []


def test_an_identity_provider_cannot_make_a_patient(idp: LoopbackIdp, clock: Clock) -> None:
    """Patients hold their own patient tokens; a JWT naming the role "patient" names no
    role (401, not a 500 from a patient principal without its patient), and a role map onto
    it is refused when the settings are read."""
    verifier = verifier_of(idp, clock)
    with pytest.raises(TokenRefused, match="role"):
        verifier.identify(idp.token(pghd_role="patient"))
    base: dict[str, Any] = {"issuer": "https://idp.example.org/realms/pghd", "audience": AUDIENCE}
    with pytest.raises(ValidationError, match="care-team members only"):
        OidcSettings(**base, role_map={"members": "patient"})
