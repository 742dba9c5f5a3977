"""Delivering one feedback event to a patient's app: a signed POST, with a timeout.

The body is the event's JSON (:class:`~pghd.feedback.events.FeedbackEvent`), signed like the
webhooks ingest takes (:func:`pghd.signatures.signature_header`: ``X-Pghd-Signature:
t=<unix>,v1=<hex HMAC-SHA256 over "<t>." + body>``, the key being the subscription's secret),
so an app verifies it with :func:`pghd.signatures.verify_timestamped`; the event id is also in
``X-Pghd-Event-Id``. Any 2xx is delivered; anything else (a status, a timeout, a refused
connection) is a failed attempt, retried by :mod:`alerts.feedback.outbox`. Redirects are not
followed (a redirect could lead anywhere).

One app cannot hold the worker's connections or memory: the timeout bounds the whole
delivery (the lookup, connecting, sending, the status line and headers), not each read, so an
app that answers a byte at a time still fails in ``timeout_s``; the answer's body is never
read (the response is closed once its status is known); the client's pool is bounded
(:data:`LIMITS`); and a patient's deliveries go one at a time (the next waits for the one
under way, which lasts at most ``timeout_s``), so one patient's dead app holds at most one
connection.

Before each POST the URL is checked again (:func:`~pghd.feedback.subscription.url_problem`)
and the host resolved, every address of it checked
(:func:`~pghd.feedback.subscription.address_problem`): a name that resolves into the
worker's own network is refused, not posted to. (The HTTP client resolves the name again
when it connects; a name that changes its answer between the two, DNS rebinding, is not
caught here: an egress proxy or firewall that keeps the workers off private networks is.)
The lookups run on the sender's own few threads (:data:`LOOKUP_THREADS`): a lookup that
hangs past the timeout is abandoned, its thread blocked until the resolver gives up, and
only other feedback lookups wait for those threads, never Kafka's or Grafana's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
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

__all__ = [
    "EVENT_ID_HEADER",
    "LIMITS",
    "LOOKUP_THREADS",
    "Attempt",
    "Resolve",
    "Sender",
    "resolve_host",
]

logger = logging.getLogger(__name__)

EVENT_ID_HEADER = "X-Pghd-Event-Id"

LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=20, keepalive_expiry=30.0)
"""The shared client's pool: a patient holds at most one of its connections at a time."""

# httpx logs every request line at INFO, URL included: a patient's app URL may hold a token
# of theirs, so those lines are not logged (failures are, by this module, without the URL).
logging.getLogger("httpx").setLevel(logging.WARNING)

WITHDRAWN = "withdrawn or erased while it waited"

Resolve = Callable[[str, int], Awaitable[list[str]]]
"""host, port -> the addresses it resolves to"""


LOOKUP_THREADS = 4
"""Threads a sender resolves apps' host names on: its own, not the event loop's default
executor (which aiokafka and the Grafana annotations use), so lookups that hang (a name
server that never answers) hold at most these, never theirs."""


async def resolve_host(
    host: str, port: int, *, executor: concurrent.futures.Executor | None = None
) -> list[str]:
    """The addresses ``host`` resolves to (the system's resolver, on ``executor``'s threads:
    the default executor's if None)."""
    infos = await asyncio.get_running_loop().run_in_executor(
        executor, functools.partial(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    )
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
        resolve: Resolve | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.allow_loopback = allow_loopback
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            limits=LIMITS,
            follow_redirects=False,
            headers={"User-Agent": "pghd-feedback"},
        )
        self._lookups = concurrent.futures.ThreadPoolExecutor(
            max_workers=LOOKUP_THREADS, thread_name_prefix="pghd-feedback-dns"
        )
        self._resolve = resolve or functools.partial(resolve_host, executor=self._lookups)
        self._clock = clock
        self._timeout_s = timeout_s
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}
        """patient id -> the lock their deliveries take turns on, and how many hold or await
        it (dropped at none)"""

    async def close(self) -> None:
        await self._client.aclose()
        self._lookups.shutdown(wait=False, cancel_futures=True)

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

    async def send(
        self,
        url: str,
        key: bytes,
        event: FeedbackEvent,
        *,
        still: Callable[[], bool] | None = None,
    ) -> Attempt:
        """POST ``event`` to ``url`` signed with ``key``, after the patient's delivery under
        way, if any; never raises. ``still``, asked right before the POST (after the wait
        and the lookup): whether the event may still be sent (not withdrawn, not erased)."""
        patient = event.patient_id
        lock, users = self._turns.get(patient, (asyncio.Lock(), 0))
        self._turns[patient] = (lock, users + 1)
        try:
            async with lock:
                return await self._send(url, key, event, still)
        finally:
            lock, users = self._turns[patient]
            if users <= 1:
                del self._turns[patient]
            else:
                self._turns[patient] = (lock, users - 1)

    async def _send(
        self, url: str, key: bytes, event: FeedbackEvent, still: Callable[[], bool] | None
    ) -> Attempt:
        try:
            async with asyncio.timeout(self._timeout_s):
                refused = await self._refused(url)
                if refused is not None:
                    return Attempt(ok=False, detail=f"not sent: {refused}")
                if still is not None and not still():
                    return Attempt(ok=False, detail=f"not sent: {WITHDRAWN}")
                return await self._post(url, key, event)
        except TimeoutError:
            return Attempt(ok=False, detail=f"Timeout: no answer within {self._timeout_s:g} s")
        except Exception as exc:
            # the exception's type only: its text may hold the URL (a token of the patient's)
            logger.warning("feedback %s not sent: %s", event.id, type(exc).__name__)
            return Attempt(ok=False, detail=f"not sent: {type(exc).__name__}")

    async def _post(self, url: str, key: bytes, event: FeedbackEvent) -> Attempt:
        body = wire.encode(event)
        headers = {
            "Content-Type": "application/json",
            PGHD_SIGNATURE_HEADER: signature_header([key], timestamp=int(self._clock()), body=body),
            EVENT_ID_HEADER: event.id,
        }
        request = self._client.build_request("POST", url, content=body, headers=headers)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            return Attempt(ok=False, detail=f"{type(exc).__name__}: {exc}"[:300])
        status = response.status_code
        await response.aclose()  # the body is not read: the connection is closed instead
        if 200 <= status < 300:
            return Attempt(ok=True, detail="delivered", status=status)
        return Attempt(ok=False, detail=f"answered HTTP {status}", status=status)
