"""Grafana annotations against a tiny local server implementing the two documented endpoints.

``POST /api/annotations`` {dashboardUID?, panelId?, time, timeEnd?, tags, text} answers
``{"message": "Annotation added", "id": N}``; ``PATCH /api/annotations/{id}`` answers
``{"message": "Annotation patched"}``; ``GET /api/annotations`` searches ``stored`` as
Grafana does (every tag given, split at ``:`` into key and value; ``from``/``to`` only when
both are given; latest end first; ``limit``). All need ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from alerts.grafana import AnnotationQueue, GrafanaAnnotator, annotation_payload
from alerts.lifecycle import Annotate

TOKEN = "glsa_test-token"
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
T0_MS = 1795608000000


@dataclass
class FakeGrafana:
    url: str = ""
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    fail_first: int = 0
    calls: int = 0
    next_id: int = 100
    stored: list[dict[str, Any]] = field(default_factory=list)
    searches: list[dict[str, list[str]]] = field(default_factory=list)


def _tag_pair(tag: str) -> tuple[str, str]:
    """Grafana's ParseTagPairs: key and value around the first ``:``, the rest dropped."""
    parts = tag.split(":")
    return (parts[0].strip(), parts[1].strip() if len(parts) > 1 else "")


def _search(stored: list[dict[str, Any]], query: dict[str, list[str]]) -> list[dict[str, Any]]:
    wanted = {_tag_pair(t) for t in query.get("tags", [])}
    start, end = int(query.get("from", ["0"])[0]), int(query.get("to", ["0"])[0])
    found = [
        item
        for item in stored
        if wanted <= {_tag_pair(t) for t in item["tags"]}
        and (not (start > 0 and end > 0) or (item["time"] <= end and item["timeEnd"] >= start))
    ]
    found.sort(key=lambda item: (item["timeEnd"], item["time"]), reverse=True)
    return found[: int(query.get("limit", ["100"])[0])]


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    state = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            state.calls += 1
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._answer(401, {"message": "Unauthorized"})
            if state.calls <= state.fail_first:
                return self._answer(500, {"message": "Internal Server Error"})
            state.requests.append((method, self.path, body))
            if method == "POST" and self.path == "/api/annotations":
                state.next_id += 1
                return self._answer(200, {"message": "Annotation added", "id": state.next_id})
            if method == "PATCH" and re.fullmatch(r"/api/annotations/\d+", self.path):
                return self._answer(200, {"message": "Annotation patched"})
            return self._answer(404, {"message": "Not found"})

        def do_POST(self) -> None:
            self._handle("POST")

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._answer(401, {"message": "Unauthorized"})
            if url.path != "/api/annotations":
                return self._answer(404, {"message": "Not found"})
            query = parse_qs(url.query)
            state.searches.append(query)
            found = _search(state.stored, query)
            data = json.dumps(found).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PATCH(self) -> None:
            self._handle("PATCH")

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def action(kind: str = "opened", *, end: datetime | None = None) -> Annotate:
    return Annotate(
        alert_id="al-1",
        fingerprint="0123456789abcdef",
        patient_id="p1",
        kind=kind,  # type: ignore[arg-type]
        text=f"{kind} text",
        time=T0,
        time_end=end,
        tags=("pghd", "alert", kind),
    )


def queue(
    grafana: FakeGrafana, ids: dict[str, int], *, token: str = TOKEN, **kwargs: Any
) -> AnnotationQueue:
    return AnnotationQueue(
        GrafanaAnnotator(grafana.url, token=token, dashboard_uid="pghd-patient", panel_id=4),
        lookup=lambda a: ids.get(a.alert_id),
        remember=lambda a, n: ids.__setitem__(a.alert_id, n),
        backoff_s=0.01,
        **kwargs,
    )


def test_payload_leaves_unset_fields_out() -> None:
    assert annotation_payload(action()) == {
        "time": T0_MS,
        "tags": ["pghd", "alert", "opened"],
        "text": "opened text",
    }
    region = annotation_payload(
        action("resolved", end=T0 + timedelta(minutes=1)), dashboard_uid="d", panel_id=2
    )
    assert region["timeEnd"] == T0_MS + 60_000
    assert (region["dashboardUID"], region["panelId"]) == ("d", 2)


async def test_opened_posts_a_point_and_resolved_patches_it_into_a_region(
    grafana: FakeGrafana,
) -> None:
    ids: dict[str, int] = {}
    annotations = queue(grafana, ids)
    assert await annotations.write(action()) == 101
    assert ids == {"al-1": 101}
    end = T0 + timedelta(minutes=30)
    assert await annotations.write(action("resolved", end=end)) == 101
    (post, path, body), (patch, patch_path, patch_body) = grafana.requests
    assert (post, path) == ("POST", "/api/annotations")
    assert body["time"] == T0_MS and body["tags"] == ["pghd", "alert", "opened"]
    assert (body["dashboardUID"], body["panelId"], body["text"]) == (
        "pghd-patient",
        4,
        "opened text",
    )
    assert "timeEnd" not in body
    assert (patch, patch_path) == ("PATCH", "/api/annotations/101")
    assert patch_body == {
        "time": T0_MS,
        "timeEnd": T0_MS + 30 * 60_000,
        "tags": ["pghd", "alert", "resolved"],
        "text": "resolved text",
    }


async def test_resolved_without_a_known_id_posts_a_region(grafana: FakeGrafana) -> None:
    annotations = queue(grafana, {})
    await annotations.write(action("resolved", end=T0 + timedelta(minutes=5)))
    ((method, path, body),) = grafana.requests
    assert (method, path, body["timeEnd"]) == ("POST", "/api/annotations", T0_MS + 300_000)


async def test_failures_are_retried_then_given_up(grafana: FakeGrafana) -> None:
    grafana.fail_first = 2
    ids: dict[str, int] = {}
    assert await queue(grafana, ids, attempts=3).write(action()) == 101
    assert grafana.calls == 3 and ids == {"al-1": 101}
    assert await queue(grafana, {}, token="wrong", attempts=2).write(action()) is None


async def test_the_queue_runs_in_the_background_and_never_blocks_submit(
    grafana: FakeGrafana,
) -> None:
    ids: dict[str, int] = {}
    annotations = queue(grafana, ids, maxsize=1)
    annotations.submit(action())
    annotations.submit(action("acknowledged"))  # queue full: dropped, no wait
    runner = asyncio.create_task(annotations.run())
    await asyncio.wait_for(annotations.queue.join(), timeout=10)
    runner.cancel()
    assert [(m, p) for m, p, _ in grafana.requests] == [("POST", "/api/annotations")]


def test_find_pages_through_every_annotation_of_the_patient_and_only_theirs(
    grafana: FakeGrafana,
) -> None:
    """Paged by end time (Grafana's order): a region that started early but ended late comes
    on the first page and does not hide the points in between; patient ``p1:x``'s tag is
    ``patient:p1`` to Grafana's search, so the exact tag decides."""

    def stored(n: int, patient: str, start_min: int, end_min: int | None = None) -> None:
        end = start_min if end_min is None else end_min
        grafana.stored.append(
            {
                "id": n,
                "time": T0_MS + start_min * 60_000,
                "timeEnd": T0_MS + end * 60_000,
                "tags": ["pghd", "alert", f"patient:{patient}", "problem:heart_rate", "opened"],
            }
        )

    stored(1, "p1", 0, 500)  # a long region: opened early, resolved late
    for n in range(2, 9):  # points of p1 in between
        stored(n, "p1", n * 10)
    stored(9, "p1:x", 30)  # another patient whose tag Grafana cuts to patient:p1
    stored(10, "p2", 40)
    stored(11, "p1:x", 600)
    annotator = GrafanaAnnotator(grafana.url, token=TOKEN)

    assert sorted(annotator.find("p1", limit=3)) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert sorted(annotator.find("p1:x", limit=3)) == [9, 11]
    assert annotator.find("p3") == []
    first = grafana.searches[0]
    assert first["tags"] == ["pghd", "patient:p1"] and first["type"] == ["annotation"]
    assert len(grafana.searches) > 3  # it paged
