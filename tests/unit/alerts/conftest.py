"""A real HTTP receiver for Apprise ``json://`` notifications, on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from pghd.contracts import Anomaly, BaselineSnapshot, Severity


@dataclass
class Receiver:
    """Records every JSON body posted to it; answers 500 to the first ``fail_first`` posts."""

    url: str = ""
    bodies: list[dict[str, Any]] = field(default_factory=list)
    fail_first: int = 0
    calls: int = 0

    def json_url(self, path: str = "hook") -> str:
        return self.url.replace("http://", "json://") + "/" + path


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()

    async def hook(request: web.Request) -> web.Response:
        state.calls += 1
        if state.calls <= state.fail_first:
            return web.Response(status=500)
        state.bodies.append(await request.json())
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/{path:.*}", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


def make_anomaly(**changes: Any) -> Anomaly:
    fields: dict[str, Any] = {
        "anomaly_id": "an-1",
        "patient_id": "p1",
        "metric": "heart_rate",
        "channel": "heart_rate",
        "detector": "zscore",
        "severity": Severity.CRITICAL,
        "score": 7.2,
        "value": 151.0,
        "unit": "/min",
        "baseline": BaselineSnapshot(mean=72, spread=5, low=62, high=82, n=300),
        "observed_at": datetime(2026, 11, 25, 8, 0, tzinfo=UTC),
        "detected_at": datetime.now(UTC),
        "explanation": "Heart rate 151/min at rest is far above this patient's usual 72/min.",
        "event_ids": ["e1"],
    }
    fields.update(changes)
    return Anomaly(**fields)
