"""Delivering one feedback event to a patient's app: a signed POST, with a timeout.

The body is the event's JSON (:class:`~pghd.feedback.events.FeedbackEvent`), signed like the
webhooks ingest takes (:func:`pghd.signatures.signature_header`: ``X-Pghd-Signature:
t=<unix>,v1=<hex HMAC-SHA256 over "<t>." + body>``, the key being the subscription's secret),
so an app verifies it with :func:`pghd.signatures.verify_timestamped`; the event id is also in
``X-Pghd-Event-Id``. Any 2xx is delivered; anything else (a status, a timeout, a refused
connection) is a failed attempt, retried by :mod:`alerts.feedback.outbox`. Redirects are not
followed (a redirect could lead anywhere).

Before each POST the URL is checked again (:func:`~pghd.feedback.subscription.url_problem`)
and the host resolved, every address of it checked
(:func:`~pghd.feedback.subscription.address_problem`): a name that resolves into the
worker's own network is refused, not posted to. (The HTTP client resolves the name again
when it connects; a name that changes its answer between the two, DNS rebinding, is not
caught here: an egress proxy or firewall that keeps the workers off private networks is.)
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from pghd import wire
from pghd.feedback.events import FeedbackEvent
from pghd.feedback.subscription import address_problem, url_problem
from pghd.signatures import PGHD_SIGNATURE_HEADER, signature_header

__all__ = ["EVENT_ID_HEADER", "Attempt", "Resolve", "Sender", "resolve_host"]

logger = logging.getLogger(__name__)

EVENT_ID_HEADER = "X-Pghd-Event-Id"

# httpx logs every request line at INFO, URL included: a patient's app URL may hold a token
# of theirs, so those lines are not logged (failures are, by this module, without the URL).
logging.getLogger("httpx").setLevel(logging.WARNING)

Resolve = Callable[[str, int], Awaitable[list[str]]]
"""host, port -> the addresses it resolves to"""


async def resolve_host(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (the system's resolver, off the event loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


@dataclass(frozen=True, slots=True)
class Attempt:
    """What became of one POST: delivered or not, and why not."""

    ok: bool
    detail: str
    status: int | None = None


class Sender:
    """POSTs signed feedback events (one shared HTTP client, a timeout per request)."""

    def __init__(
        self,
        *,
        timeout_s: float,
        allow_loopback: bool,
        client: httpx.AsyncClient | None = None,
        resolve: Resolve = resolve_host,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.allow_loopback = allow_loopback
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            headers={"User-Agent": "pghd-feedback"},
        )
        self._resolve = resolve
        self._clock = clock
        self._timeout_s = timeout_s

    async def close(self) -> None:
        await self._client.aclose()

    async def _refused(self, url: str) -> str | None:
        problem = url_problem(url, allow_loopback_http=self.allow_loopback)
        if problem is not None:
            return problem
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = await asyncio.wait_for(self._resolve(host, port), self._timeout_s)
        except (OSError, TimeoutError) as exc:
            return f"the host does not resolve ({type(exc).__name__})"
        return address_problem(addresses, allow_loopback=self.allow_loopback)

    async def send(self, url: str, key: bytes, event: FeedbackEvent) -> Attempt:
        """POST ``event`` to ``url`` signed with ``key``; never raises."""
        refused = await self._refused(url)
        if refused is not None:
            return Attempt(ok=False, detail=f"not sent: {refused}")
        body = wire.encode(event)
        headers = {
            "Content-Type": "application/json",
            PGHD_SIGNATURE_HEADER: signature_header([key], timestamp=int(self._clock()), body=body),
            EVENT_ID_HEADER: event.id,
        }
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return Attempt(ok=False, detail=f"{type(exc).__name__}: {exc}"[:300])
        if 200 <= response.status_code < 300:
            return Attempt(ok=True, detail="delivered", status=response.status_code)
        return Attempt(
            ok=False, detail=f"answered HTTP {response.status_code}", status=response.status_code
        )
