"""A small OpenID Connect identity provider on the loopback, for the OIDC tests.

No IdP (Keycloak and the like) is installed here, so :class:`LoopbackIdp` is one: it serves
a discovery document and a JWKS over real HTTP (``http.server`` in a thread), holds the
private keys it publishes (generated per test with ``cryptography``), signs tokens with
them, rotates keys, counts the requests it answered, and can be stopped like a provider
that went down.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

AUDIENCE = "pghd-care-api"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def new_key(alg: str) -> PrivateKey:
    """A fresh private key for ``alg`` (RS256: RSA 2048, ES256: P-256)."""
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(alg)


def public_jwk(key: PrivateKey, *, kid: str, alg: str) -> dict[str, Any]:
    """The JWK of ``key``'s public half as a provider publishes it."""
    if isinstance(key, rsa.RSAPrivateKey):
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    else:
        jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.pop("key_ops", None)
    return jwk | {"kid": kid, "alg": alg, "use": "sig"}


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: PrivateKey


@dataclass
class LoopbackIdp:
    """The provider; ``issuer`` and ``jwks_url`` are set once it serves."""

    issuer: str = ""
    jwks_url: str = ""
    keys: list[SigningKey] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    now: Callable[[], float] = time.time  # when its tokens are issued
    _server: ThreadingHTTPServer | None = None

    def add_key(self, alg: str = "RS256", kid: str | None = None) -> SigningKey:
        """Publish a new key (rotation: the old ones stay until removed)."""
        key = SigningKey(kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}", alg, new_key(alg))
        self.keys.append(key)
        return key

    def remove_key(self, kid: str) -> None:
        self.keys = [k for k in self.keys if k.kid != kid]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(k.private, kid=k.kid, alg=k.alg) for k in self.keys]}

    def claims(self, **changes: Any) -> dict[str, Any]:
        """A clinician of ward-a's access token claims, with ``changes`` (None removes)."""
        now = int(self.now())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "6b1c9b7e-8a83-4a4e-9d1c-0d9f3f0a1b2c",
            "preferred_username": "nurse-a",
            "iat": now,
            "exp": now + 300,
            "pghd_role": "clinician",
            "pghd_teams": ["ward-a"],
        }
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, key: SigningKey | None = None, *, kid: str | None = "", **changes: Any) -> str:
        """A token signed with ``key`` (the first key by default); ``kid`` overrides the
        header's key id ("" keeps the key's, None leaves it out)."""
        key = key or self.keys[0]
        headers = {} if kid is None else {"kid": kid or key.kid}
        return jwt.encode(self.claims(**changes), key.private, algorithm=key.alg, headers=headers)

    def stop(self) -> None:
        """Go down: the port no longer answers."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@contextmanager
def serving_idp(*, discovery_issuer: str | None = None) -> Iterator[LoopbackIdp]:
    """A :class:`LoopbackIdp` with one RS256 key, serving on 127.0.0.1 until the block ends.
    ``discovery_issuer`` makes its discovery document name another issuer."""
    idp = LoopbackIdp()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            idp.requests.append(self.path)
            if self.path == "/realms/pghd/.well-known/openid-configuration":
                body: dict[str, Any] = {
                    "issuer": discovery_issuer or idp.issuer,
                    "jwks_uri": idp.jwks_url,
                }
            elif self.path == "/realms/pghd/protocol/openid-connect/certs":
                body = idp.jwks()
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    idp._server = server
    base = f"http://127.0.0.1:{server.server_address[1]}/realms/pghd"
    idp.issuer, idp.jwks_url = base, f"{base}/protocol/openid-connect/certs"
    idp.add_key("RS256")
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield idp
    finally:
        idp.stop()
        thread.join(timeout=5)
