"""The signed POST to a patient's app, against a real HTTP server on the loopback: ingest's
own verifier accepts its signature; failures, timeouts, redirects and addresses inside the
network are attempts that failed, never an exception."""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiohttp import web

from alerts.feedback.sender import EVENT_ID_HEADER, LOOKUP_THREADS, Sender
from ingest.webhooks.signing import BadSignature, verify_timestamped
from pghd import wire
from pghd.contracts import Severity
from pghd.feedback.events import FeedbackEvent, FindingDetails, event_id
from pghd.feedback.subscription import new_secret
from pghd.feedback.wording import Kind

NOW = datetime(2026, 12, 6, 14, 5, tzinfo=UTC)
EVENT = FeedbackEvent(
    id=event_id("al-1", "finding_opened"),
    kind=Kind.FINDING_OPENED,
    patient_id="p-1",
    occurred_at=NOW,
    severity=Severity.WARNING,
    message="Your heart rate has been 9 beats per minute above your usual since ...",
    details=FindingDetails(finding_id="al-1", metric="heart_rate", opened_at=NOW),
)


@dataclass
class App:
    """A patient's app: what it was sent, and how it answers."""

    url: str = ""
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    status: int = 200
    delay_s: float = 0.0


@pytest.fixture
async def app() -> AsyncIterator[App]:
    state = App()

    async def hook(request: web.Request) -> web.Response:
        state.posts.append((dict(request.headers), await request.read()))
        await asyncio.sleep(state.delay_s)
        if state.status == 302:
            return web.Response(status=302, headers={"Location": state.url + "/elsewhere"})
        return web.Response(status=state.status)

    server = web.Application()
    server.router.add_post("/{path:.*}", hook)
    runner = web.AppRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield state
    await runner.cleanup()


def sender(*, timeout_s: float = 5.0, allow_loopback: bool = True) -> Sender:
    return Sender(timeout_s=timeout_s, allow_loopback=allow_loopback, clock=lambda: 1_765_029_900)


async def test_a_delivery_carries_the_event_signed_as_ingest_verifies_it(app: App) -> None:
    secret = new_secret()
    sent = await sender().send(app.url + "/pghd", secret.encode("ascii"), EVENT)
    assert sent.ok and sent.status == 200
    ((headers, body),) = app.posts
    assert wire.decode(FeedbackEvent, body) == EVENT
    assert headers[EVENT_ID_HEADER] == EVENT.id
    assert headers["Content-Type"] == "application/json"
    verified = verify_timestamped(
        headers["X-Pghd-Signature"], body, secrets=[secret.encode("ascii")], now=1_765_029_950
    )
    assert verified.timestamp == 1_765_029_900
    with pytest.raises(BadSignature):  # another patient's secret does not verify it
        verify_timestamped(
            headers["X-Pghd-Signature"], body, secrets=[new_secret().encode()], now=1_765_029_950
        )


@pytest.mark.parametrize("status", [500, 404, 302])
async def test_anything_but_a_2xx_is_a_failed_attempt(app: App, status: int) -> None:
    app.status = status
    sent = await sender().send(app.url + "/h", b"k" * 64, EVENT)
    assert not sent.ok and sent.status == status and f"HTTP {status}" in sent.detail
    assert len(app.posts) == 1, "a redirect is not followed"


async def test_a_slow_app_fails_within_the_timeout(app: App) -> None:
    app.delay_s = 2.0
    started = time.monotonic()
    sent = await sender(timeout_s=0.3).send(app.url + "/h", b"k" * 64, EVENT)
    assert not sent.ok and "Timeout" in sent.detail
    assert time.monotonic() - started < 1.5


async def test_a_closed_port_is_a_failed_attempt() -> None:
    sent = await sender().send("http://127.0.0.1:9/h", b"k" * 64, EVENT)
    assert not sent.ok and "Connect" in sent.detail


async def test_the_loopback_takes_nothing_unless_allowed(app: App) -> None:
    sent = await sender(allow_loopback=False).send(app.url + "/h", b"k" * 64, EVENT)
    assert not sent.ok and "local or development" in sent.detail
    assert app.posts == []


async def test_a_name_that_resolves_into_the_network_is_not_posted_to() -> None:
    async def inside(host: str, port: int) -> list[str]:
        return ["10.0.0.7"]

    async def nowhere(host: str, port: int) -> list[str]:
        raise OSError("no such host")

    rebound = Sender(timeout_s=1, allow_loopback=False, resolve=inside)
    sent = await rebound.send("https://app.example.org/h", b"k" * 64, EVENT)
    assert not sent.ok and "10.0.0.7" in sent.detail
    unknown = Sender(timeout_s=1, allow_loopback=False, resolve=nowhere)
    assert "does not resolve" in (await unknown.send("https://x.example.org", b"k", EVENT)).detail


async def _serve(handler: Any) -> tuple[web.AppRunner, str]:
    server = web.Application()
    server.router.add_post("/{path:.*}", handler)
    runner = web.AppRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/hook"


async def _drip(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(status=200)
    await resp.prepare(request)
    for _ in range(8):  # a byte every 0.3 s: each read within the timeout, 2.4 s in all
        await resp.write(b"x")
        await asyncio.sleep(0.3)
    return resp


async def _flood(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(status=200)
    await resp.prepare(request)
    for _ in range(64):  # 64 MiB
        await resp.write(b"x" * (1 << 20))
    return resp


@pytest.mark.parametrize("handler", [_drip, _flood])
async def test_the_answers_body_is_not_read_nor_waited_for(handler: Any) -> None:
    """An app that answers 2xx and then drips a body, or floods one: delivered as soon as the
    status is in, the body left unread (the response closed)."""
    runner, url = await _serve(handler)
    s = sender(timeout_s=0.5)
    read: list[int] = []
    real = s._client.send

    async def spy(request: httpx.Request, **kw: Any) -> httpx.Response:
        response = await real(request, **kw)
        read.append(response.num_bytes_downloaded)
        return response

    s._client.send = spy  # type: ignore[method-assign]
    try:
        started = time.monotonic()
        sent = await s.send(url, b"k" * 64, EVENT)
        took = time.monotonic() - started
    finally:
        await s.close()
        await runner.cleanup()
    assert sent.ok and took < 1.0, (sent, took)
    assert read == [0], f"{read} bytes of the body read"


async def test_an_app_that_drips_its_headers_fails_within_the_timeout() -> None:
    """The timeout bounds the whole delivery, not each read."""

    async def slow_headers(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(10):  # a header every 0.3 s
            request.transport.write(f"X-Drip-{i}: x\r\n".encode())
            await asyncio.sleep(0.3)
        await asyncio.sleep(10)
        return web.StreamResponse()

    runner, url = await _serve(slow_headers)
    s = sender(timeout_s=0.5)
    try:
        started = time.monotonic()
        sent = await s.send(url, b"k" * 64, EVENT)
        took = time.monotonic() - started
    finally:
        await s.close()
        await runner.cleanup()
    assert not sent.ok and "Timeout" in sent.detail
    assert took < 1.0, f"a delivery with a 0.5 s timeout took {took:.1f} s"


async def test_one_patients_deliveries_go_one_at_a_time_and_others_are_not_starved() -> None:
    """A patient's dead app holds one connection at a time; another patient's app is posted
    to meanwhile (the pool is not filled by the dead one)."""
    arrived: list[float] = []

    async def dead(request: web.Request) -> web.Response:
        arrived.append(time.monotonic())
        await asyncio.sleep(1.5)
        return web.Response(status=204)

    async def ok(request: web.Request) -> web.Response:
        return web.Response(status=204)

    dead_runner, dead_url = await _serve(dead)
    ok_runner, ok_url = await _serve(ok)
    s = sender(timeout_s=0.4)
    other = EVENT.model_copy(update={"patient_id": "p-2"})
    try:
        hung = [asyncio.ensure_future(s.send(dead_url, b"k", EVENT)) for _ in range(3)]
        await asyncio.sleep(0.1)
        got = await s.send(ok_url, b"k", other)
        tried = await asyncio.gather(*hung)
    finally:
        await s.close()
        await dead_runner.cleanup()
        await ok_runner.cleanup()
    assert got.ok, got.detail
    assert all(not t.ok for t in tried)
    gaps = [b - a for a, b in itertools.pairwise(arrived)]
    assert len(arrived) == 3 and min(gaps) > 0.3, f"one patient's POSTs overlapped: {gaps}"
    assert s._turns == {}


async def test_pool_is_not_starved_by_apps_that_answer_slowly() -> None:
    """The reviewer's case: 100 deliveries to apps that drip; another app is still posted to."""

    async def drip(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=200)
        await resp.prepare(request)
        while True:
            await resp.write(b"x")
            await asyncio.sleep(0.2)

    async def ok(request: web.Request) -> web.Response:
        return web.Response(status=204)

    bad_runner, bad = await _serve(drip)
    good_runner, good = await _serve(ok)
    s = sender(timeout_s=0.5)
    events = [EVENT.model_copy(update={"patient_id": f"p-{i}"}) for i in range(100)]
    hung = [asyncio.ensure_future(s.send(bad, b"k", e)) for e in events]
    await asyncio.sleep(1.0)
    try:
        got = await s.send(good, b"k", EVENT)
    finally:
        for t in hung:
            t.cancel()
        await asyncio.gather(*hung, return_exceptions=True)
        await s.close()
        await bad_runner.cleanup()
        await good_runner.cleanup()
    assert got.ok, got.detail


async def test_a_lookup_that_raises_anything_is_a_failed_attempt_not_an_exception() -> None:
    """Sender.send never raises: the idna codec's UnicodeError (a name the resolver refuses)
    or anything else from the lookup is a failed attempt."""

    async def refuses(host: str, port: int) -> list[str]:
        raise UnicodeError("encoding with 'idna' codec failed (UnicodeError: label too long)")

    s = Sender(timeout_s=1, allow_loopback=False, resolve=refuses, clock=lambda: 1_765_029_900)
    try:
        sent = await s.send("https://app.example.org/h?token=secret", b"k", EVENT)
    finally:
        await s.close()
    assert not sent.ok and sent.detail == "not sent: UnicodeError"


async def test_a_host_the_resolver_would_refuse_is_not_looked_up() -> None:
    url = "https://" + "a" * 64 + ".example.org/hook"
    looked_up: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        looked_up.append(host)
        return ["93.184.215.14"]

    s = Sender(timeout_s=1, allow_loopback=False, resolve=resolve, clock=lambda: 1_765_029_900)
    try:
        sent = await s.send(url, b"k", EVENT)
    finally:
        await s.close()
    assert not sent.ok and "not a valid name" in sent.detail and looked_up == []


async def test_lookups_that_hang_hold_the_senders_few_threads_not_the_default_executor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiokafka resolves brokers and the Grafana annotations run on the loop's default
    executor: 40 apps whose name server never answers must not park its threads."""
    real = socket.getaddrinfo
    busy, most = 0, 0
    lock = threading.Lock()

    def black_hole(host: str, *args: Any, **kw: Any) -> Any:
        nonlocal busy, most
        if not host.endswith(".blackhole.example"):
            return real(host, *args, **kw)
        with lock:
            busy += 1
            most = max(most, busy)
        time.sleep(1.5)  # a resolver waiting on a name server that never answers
        with lock:
            busy -= 1
        raise socket.gaierror("timed out")

    monkeypatch.setattr(socket, "getaddrinfo", black_hole)
    s = sender(timeout_s=0.2, allow_loopback=False)
    try:
        tried = await asyncio.gather(
            *[
                s.send(
                    f"https://e{i}.blackhole.example/x",
                    b"k",
                    EVENT.model_copy(update={"patient_id": f"p-{i}"}),
                )
                for i in range(40)
            ]
        )
        started = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(None, lambda: None)
        waited = time.monotonic() - started
    finally:
        await s.close()
    assert all(not t.ok for t in tried)
    assert waited < 0.5, f"a no-op on the default executor waited {waited:.1f} s"
    assert most <= LOOKUP_THREADS


async def test_an_event_withdrawn_while_it_waited_is_not_posted(app: App) -> None:
    asked: list[str] = []

    def still() -> bool:
        asked.append("after the lookup")
        return False

    sent = await sender().send(app.url + "/h", b"k" * 64, EVENT, still=still)
    assert not sent.ok and "withdrawn" in sent.detail and app.posts == []
    assert asked == ["after the lookup"]
    assert (await sender().send(app.url + "/h", b"k", EVENT, still=lambda: True)).ok
