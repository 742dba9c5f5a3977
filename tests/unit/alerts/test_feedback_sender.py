"""The signed POST to a patient's app, against a real HTTP server on the loopback: ingest's
own verifier accepts its signature; failures, timeouts, redirects and addresses inside the
network are attempts that failed, never an exception."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from aiohttp import web

from alerts.feedback.sender import EVENT_ID_HEADER, Sender
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
