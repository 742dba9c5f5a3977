"""What a patient's app does with a delivery: verify it with the registration's secret (the
code ingest verifies webhooks with), read the event, drop a repeat by its id."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from pghd import wire
from pghd.contracts import Severity
from pghd.feedback.events import FeedbackEvent, FindingDetails, event_id
from pghd.feedback.receiver import PatientAppReceiver, read_delivery
from pghd.feedback.subscription import new_secret
from pghd.feedback.wording import Kind
from pghd.signatures import BadSignature, StaleSignature, signature_header

NOW = 1_765_029_900
EVENT = FeedbackEvent(
    id=event_id("al-1", "finding_opened"),
    kind=Kind.FINDING_OPENED,
    patient_id="p-1",
    occurred_at=datetime(2026, 12, 6, 14, 5, tzinfo=UTC),
    severity=Severity.INFO,
    message="words",
    details=FindingDetails(
        finding_id="al-1", metric="spo2", opened_at=datetime(2026, 12, 6, 14, 5, tzinfo=UTC)
    ),
)
SECRET = new_secret()
BODY = wire.encode(EVENT)


def signed(body: bytes = BODY, secret: str = SECRET, at: int = NOW) -> str:
    return signature_header([secret.encode("ascii")], timestamp=at, body=body)


def test_a_delivery_is_read_once_its_signature_verifies() -> None:
    assert read_delivery(signed(), BODY, secret=SECRET, now=NOW + 5) == EVENT
    with pytest.raises(BadSignature):
        read_delivery(signed(secret=new_secret()), BODY, secret=SECRET, now=NOW)
    with pytest.raises(BadSignature):
        read_delivery(signed(), BODY.replace(b"words", b"other"), secret=SECRET, now=NOW)
    with pytest.raises(StaleSignature):
        read_delivery(signed(), BODY, secret=SECRET, now=NOW + 3600)
    with pytest.raises(ValueError, match="not a feedback event"):
        read_delivery(signed(b"{}"), b"{}", secret=SECRET, now=NOW)


def test_the_receiver_answers_as_an_app_should() -> None:
    taken: list[tuple[str, bool]] = []
    refused: list[str] = []
    with PatientAppReceiver(
        port=0,
        on_event=lambda e, repeat: taken.append((e.id, repeat)),
        on_refused=refused.append,
        clock=lambda: NOW,
    ) as app:

        def post(body: bytes, signature: str) -> int:
            headers = {"X-Pghd-Signature": signature, "Content-Type": "application/json"}
            return httpx.post(app.url, content=body, headers=headers, timeout=5).status_code

        assert post(BODY, signed()) == 503, "its secret is not known yet"
        app.secret = SECRET
        assert post(BODY, signed()) == 200
        assert post(BODY, signed()) == 200  # a repeat: taken, so the sender stops
        assert post(BODY, signed(secret=new_secret())) == 401
        assert post(b"{}", signed(b"{}")) == 400
    assert taken == [(EVENT.id, False), (EVENT.id, True)]
    assert len(refused) == 2 and "does not match the body" in refused[0]


def test_the_verification_example_of_the_docs_accepts_pghds_signatures() -> None:
    """docs/patients.md shows an app's verification without pghd: it must accept
    what the worker signs, and refuse what it did not."""
    doc = (Path(__file__).resolve().parents[3] / "docs" / "patients.md").read_text()
    section = doc.split("### Verifying a delivery", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "patients.md", "exec"), namespace)
    read = namespace["read_delivery"]
    now = int(time.time())
    assert read(signed(at=now), BODY, SECRET)["id"] == EVENT.id
    with pytest.raises(ValueError, match="not signed"):
        read(signed(secret=new_secret(), at=now), BODY, SECRET)
    with pytest.raises(ValueError, match="stale"):
        read(signed(at=now - 3600), BODY, SECRET)
