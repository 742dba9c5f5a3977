"""``pghd simulate``: batching, retries, pacing, response tallies, and a run against a server."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

from alerts.feedback.sender import Sender
from pghd.commands.simulate import Tally, parse_end, post_readings, simulate, tally_response
from pghd.contracts import Severity
from pghd.feedback.events import FeedbackEvent, FindingDetails, event_id
from pghd.feedback.subscription import new_secret
from pghd.feedback.wording import Kind
from pghd.readings import ReadingIn, ReadingRejected, canonicalize
from pghd.simulation import generate_cohort

from .conftest import END


def _reading(n: int) -> dict[str, Any]:
    when = END - timedelta(hours=1) + timedelta(minutes=n)
    return {
        "event_id": f"e{n}",
        "patient_id": "p1",
        "metric": "heart_rate",
        "value": 70,
        "unit": "/min",
        "effective_time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


_REFUSED = "refused with its batch (HTTP 422)"


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            202,
            {
                "accepted": 2,
                "rejected": 1,
                "items": [
                    {"index": 0, "status": "accepted", "event_id": "a"},
                    {
                        "index": 1,
                        "status": "rejected",
                        "errors": [{"pointer": "/1/unit", "field": "unit", "detail": "x"}],
                    },
                    {"index": 2, "status": "accepted", "event_id": "b"},
                ],
            },
            (2, ["invalid unit"]),
        ),
        (202, None, (3, [])),
        (
            422,
            {
                "type": "urn:pghd:problem:invalid-readings",
                "status": 422,
                "errors": [
                    {"pointer": "/0/value", "field": "value", "detail": "out of range"},
                    {"pointer": "/1/effective_time", "field": "effective_time", "detail": "future"},
                    {"pointer": "/1/unit", "field": "unit", "detail": "unknown"},
                    {"pointer": "/2", "field": None, "detail": "not an object"},
                ],
            },
            (0, ["invalid value", "invalid effective_time,unit", "invalid item"]),
        ),
        (
            422,
            {"type": "urn:pghd:problem:empty-batch", "status": 422, "detail": "empty"},
            (0, [_REFUSED] * 3),
        ),
        (400, "not json", (0, ["refused with its batch (HTTP 400)"] * 3)),
    ],
)
def test_tally_response_shapes(status: int, body: Any, expected: tuple[int, list[str]]) -> None:
    assert tally_response(status, body, 3) == expected


def test_503_is_retried_after_retry_after_with_the_same_batch() -> None:
    seen: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["X-API-Key"] == "k"
        batch = json.loads(request.content)
        seen.append([r["event_id"] for r in batch])
        if len(seen) == 1:
            return httpx.Response(503, headers={"Retry-After": "2"}, json={"title": "kafka down"})
        return httpx.Response(202, json={"accepted": len(batch), "rejected": 0, "items": []})

    sleeps: list[float] = []
    client = httpx.Client(
        base_url="http://ingest", headers={"X-API-Key": "k"}, transport=httpx.MockTransport(handler)
    )
    tally = post_readings(
        [_reading(n) for n in range(5)], client=client, batch_size=3, sleep=sleeps.append
    )
    assert seen == [["e0", "e1", "e2"], ["e0", "e1", "e2"], ["e3", "e4"]]
    assert sleeps == [2.0]
    assert (tally.posted, tally.accepted, tally.retries, sum(tally.rejected.values())) == (
        5,
        5,
        1,
        0,
    )


def test_speed_paces_batches_by_simulated_time() -> None:
    now = [0.0]
    posts: list[tuple[float, int]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        posts.append((now[0], len(json.loads(request.content))))
        return httpx.Response(202, json={"accepted": len(json.loads(request.content))})

    def sleep(seconds: float) -> None:
        now[0] += seconds

    client = httpx.Client(base_url="http://ingest", transport=httpx.MockTransport(handler))
    # readings one simulated minute apart, 60x speed: one real second apart
    post_readings(
        [_reading(n) for n in range(4)],
        client=client,
        speed=60,
        sleep=sleep,
        clock=lambda: now[0],
    )
    assert posts == [(0.0, 1), (1.0, 1), (2.0, 1), (3.0, 1)]


def test_auth_failure_is_an_error() -> None:
    client = httpx.Client(
        base_url="http://ingest", transport=httpx.MockTransport(lambda r: httpx.Response(401))
    )
    with pytest.raises(RuntimeError, match="API key"):
        post_readings([_reading(0)], client=client, tally=Tally())


class _FakeIngest(BaseHTTPRequestHandler):
    """Validates like ingest does; answers 503 to the very first request."""

    calls = 0
    event_ids: list[str] = []
    bodies: list[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        type(self).calls += 1
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if type(self).calls > 1:
            type(self).bodies.append(body)
        if self.path != "/v1/measurements" or self.headers.get("X-API-Key") != "secret":
            self._send(404 if self.path != "/v1/measurements" else 401, {})
        elif type(self).calls == 1:
            self._send(503, {"title": "unavailable"}, retry_after="0")
        else:
            items: list[dict[str, Any]] = []
            for i, raw in enumerate(body):
                try:
                    reading = ReadingIn.model_validate(raw)
                    canonicalize(reading, vendor="sim", received_at=datetime.now(UTC))
                    type(self).event_ids.append(raw["event_id"])
                    items.append({"index": i, "status": "accepted", "event_id": raw["event_id"]})
                except (ValidationError, ReadingRejected):
                    errors = [{"pointer": f"/{i}", "field": None, "detail": "bad"}]
                    items.append({"index": i, "status": "rejected", "errors": errors})
            bad = sum(item["status"] == "rejected" for item in items)
            self._send(202, {"accepted": len(items) - bad, "rejected": bad, "items": items})

    def _send(self, status: int, body: Any, retry_after: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def ingest_url() -> Iterator[str]:
    _FakeIngest.calls, _FakeIngest.event_ids, _FakeIngest.bodies = 0, [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeIngest)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(simulate)
    return app


def test_command_posts_the_whole_cohort(ingest_url: str, tmp_path: Path) -> None:
    labels = tmp_path / "labels.json"
    args = ["--patients", "3", "--days", "1", "--url", ingest_url, "--batch", "200"]
    args += ["--seed", "5", "--episodes-fraction", "0.7", "--labels-out", str(labels)]
    args += ["--end", END.isoformat()]
    result = CliRunner().invoke(_cli(), args, env={"PGHD_API_KEY": "secret"})
    assert result.exit_code == 0, result.output
    total = len(_FakeIngest.event_ids)
    assert total == len(set(_FakeIngest.event_ids)), "the retried batch was not duplicated"
    cohort = generate_cohort(patients=3, days=1, end=END, seed=5, episodes_fraction=0.7)
    assert _FakeIngest.event_ids == [r["event_id"] for r in cohort.readings()]
    assert total > 3 * 150
    assert f"posted    {total} readings" in result.output
    assert f"accepted  {total}" in result.output and "rejected  0" in result.output
    document = json.loads(labels.read_text())
    assert (document["start"], document["end"]) == (
        (END - timedelta(days=1)).isoformat(),
        END.isoformat(),
    )
    assert len(document["episodes"]) == 2
    assert {"patient_id", "kind", "start", "end", "metrics"} <= set(document["episodes"][0])


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2026-11-25T12:00:00Z", datetime(2026, 11, 25, 12, tzinfo=UTC)),
        ("2026-11-25T12:00", datetime(2026, 11, 25, 12, tzinfo=UTC)),  # no offset: UTC
        ("2026-11-25T13:30:00+01:30", datetime(2026, 11, 25, 12, tzinfo=UTC)),
    ],
)
def test_end_is_iso_8601_utc_unless_it_gives_an_offset(given: str, expected: datetime) -> None:
    when = parse_end(given)
    assert when == expected and when.utcoffset() == timedelta(0)


def test_end_that_is_no_time_is_a_usage_error(ingest_url: str) -> None:
    args = ["--patients", "1", "--days", "0.1", "--url", ingest_url, "--end", "yesterday"]
    result = CliRunner().invoke(_cli(), [*args, "--api-key", "secret"])
    assert result.exit_code == 2
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())  # unboxed, unwrapped
    assert "'yesterday' is not an ISO-8601 time" in text, result.output
    assert _FakeIngest.calls == 0


def test_command_exits_non_zero_when_ingest_is_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ["--patients", "1", "--days", "0.1", "--url", f"http://127.0.0.1:{port}"]
    result = CliRunner().invoke(_cli(), [*args, "--api-key", "k"])
    assert result.exit_code == 1
    assert "cannot reach" in result.output


def test_readings_carry_no_oracle_context_unless_asked(ingest_url: str) -> None:
    """By default only an Apple-like watch's motion context is posted; ``--oracle-context``
    labels every reading with the truth."""
    args = ["--patients", "4", "--days", "1", "--url", ingest_url, "--seed", "5"]
    args += ["--end", END.isoformat(), "--api-key", "secret"]
    cohort = generate_cohort(patients=4, days=1, end=END, seed=5)
    for flag, labels in (([], False), (["--oracle-context"], True)):
        _FakeIngest.calls, _FakeIngest.event_ids, _FakeIngest.bodies = 0, [], []
        result = CliRunner().invoke(_cli(), [*args, *flag])
        assert result.exit_code == 0, result.output
        posted = [r for body in _FakeIngest.bodies for r in body]
        labelled = generate_cohort(patients=4, days=1, end=END, seed=5, labels=labels)
        assert posted == list(labelled.readings())
        with_context = [r for r in posted if "context" in r]
        if labels:
            assert all("context" in r for r in posted if r["metric"] == "heart_rate")
        else:
            apple = {p.patient_id for p in cohort.patients if p.apple}
            assert {r["patient_id"] for r in with_context} <= apple
            assert {r["metric"] for r in with_context} <= {"heart_rate"}


def test_evaluate_passes_oracle_context_through(monkeypatch: pytest.MonkeyPatch) -> None:
    import processors.evaluation
    from pghd.commands import evaluate as command

    seen: dict[str, Any] = {}
    real = command.generate_cohort

    def generate(**kwargs: Any) -> Any:
        seen["generated"] = kwargs.get("labels")
        return real(**{**kwargs, "patients": 1, "days": 0.1})

    def evaluate_cohort(cohort: Any, **kwargs: Any) -> Any:
        seen["cohort"], seen["evaluated"] = cohort.labels, kwargs.get("labels")
        return SimpleNamespace(readings=0)

    monkeypatch.setattr(command, "generate_cohort", generate)
    monkeypatch.setattr(command, "format_evaluation", lambda evaluation: "table")
    monkeypatch.setattr(processors.evaluation, "evaluate_cohort", evaluate_cohort)
    app = typer.Typer()
    app.command()(command.evaluate)
    for flag, labels in (([], False), (["--oracle-context"], True)):
        result = CliRunner().invoke(app, ["--patients", "1", *flag])
        assert result.exit_code == 0, result.output
        assert seen == {"generated": labels, "cohort": labels, "evaluated": labels}


def _event(n: int, kind: Kind = Kind.FINDING_OPENED) -> FeedbackEvent:
    now = datetime.now(UTC)
    return FeedbackEvent(
        id=event_id("sim", str(n), kind.value),
        kind=kind,
        patient_id="p1",
        occurred_at=now,
        severity=Severity.WARNING,
        message=f"Your heart rate has been {n} beats per minute above your usual.",
        details=FindingDetails(finding_id=f"al-{n}", metric="heart_rate", opened_at=now),
    )


class _FakeCareApi(BaseHTTPRequestHandler):
    """Registers p1's app (token ``p1-token``), then plays the alerts worker: a signed event,
    its repeat, and one signed with another secret are POSTed to the registered URL."""

    registered: list[dict[str, Any]] = []
    answers: list[int] = []

    def do_PUT(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/me/feedback" or self.headers["Authorization"] != "Bearer p1-token":
            self._send(403, {"detail": "forbidden"})
            return
        type(self).registered.append(body)
        secret = new_secret()
        self._send(200, {"patient_id": "p1", "secret": secret, "url": body["url"]})
        threading.Thread(target=self._deliver, args=(body["url"], secret), daemon=True).start()

    @staticmethod
    def _deliver(url: str, secret: str) -> None:
        async def deliver() -> None:
            sender = Sender(timeout_s=5, allow_loopback=True)
            for key, event in (
                (secret, _event(1)),
                (secret, _event(1)),  # a repeat (its first answer was lost, say)
                (new_secret(), _event(2)),  # not signed with this app's secret
            ):
                tried = await sender.send(url, key.encode("ascii"), event)
                _FakeCareApi.answers.append(tried.status or 0)
            await sender.close()

        time.sleep(0.2)  # the app knows its secret once the registration was answered
        asyncio.run(deliver())

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def care_api_url() -> Iterator[str]:
    _FakeCareApi.registered, _FakeCareApi.answers = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeCareApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_patient_app_registers_verifies_and_prints_each_event(
    ingest_url: str, care_api_url: str
) -> None:
    args = ["--patients", "1", "--days", "0.05", "--url", ingest_url, "--end", END.isoformat()]
    args += ["--patient-app", "0", "--care-api-url", care_api_url, "--patient-app-wait", "2"]
    args += ["--patient-app-kind", "finding_opened", "--patient-app-kind", "reading_refused"]
    result = CliRunner().invoke(
        _cli(), args, env={"PGHD_API_KEY": "secret", "PGHD_PATIENT_TOKEN": "p1-token"}
    )
    assert result.exit_code == 0, result.output
    ((registration),) = _FakeCareApi.registered
    assert registration["url"].startswith("http://127.0.0.1:")
    assert registration["kinds"] == ["finding_opened", "reading_refused"]
    assert _FakeCareApi.answers == [200, 200, 401], "verified, a repeat taken, a forgery refused"
    out = result.output
    assert out.count("Your heart rate has been 1 beats per minute") == 2
    assert "patient app: finding_opened [warning] Your heart rate has been 1 beats" in out
    assert "(a repeat: dropped)" in out
    assert "REFUSED a delivery" in out and "does not match the body" in out
    assert "Your heart rate has been 2" not in out
    assert "1 events (1 finding_opened), 1 repeats dropped, 1 deliveries refused" in out


def test_patient_app_needs_the_patients_token_and_says_why_it_was_refused(
    ingest_url: str, care_api_url: str
) -> None:
    args = ["--patients", "1", "--days", "0.05", "--url", ingest_url, "--end", END.isoformat()]
    args += ["--patient-app", "0", "--care-api-url", care_api_url]
    missing = CliRunner().invoke(_cli(), args, env={"PGHD_API_KEY": "secret"})
    assert missing.exit_code == 2 and "--patient-token" in missing.output
    wrong = CliRunner().invoke(
        _cli(), [*args, "--patient-token", "not-p1"], env={"PGHD_API_KEY": "secret"}
    )
    assert wrong.exit_code == 1 and "refused the registration (HTTP 403)" in wrong.output
    assert _FakeIngest.calls == 0, "nothing posted before the app was registered"
