"""``pghd simulate --patient-app PORT``: play one patient's app while the cohort is posted.

A :class:`~pghd.feedback.receiver.PatientAppReceiver` listens on 127.0.0.1:PORT and is
registered for feedback at the care-team API with the patient's own token
(``PUT /v1/me/feedback``); the secret the registration answers verifies every delivery, with
the code ingest verifies webhooks with; each event's message is printed as it arrives. The
care-team API and the alerts worker must allow apps on the loopback
(``PGHD_FEEDBACK_ALLOW_LOOPBACK_HTTP=true``: local stacks only).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from pghd.feedback.events import FeedbackEvent
from pghd.feedback.receiver import PatientAppReceiver
from pghd.feedback.wording import Kind

__all__ = [
    "FEEDBACK_PATH",
    "PatientApp",
    "PatientAppError",
    "event_line",
    "patient_app",
    "register",
]

FEEDBACK_PATH = "/v1/me/feedback"


class PatientAppError(RuntimeError):
    """The app could not be registered; the message says why."""


@dataclass
class PatientApp:
    """What the app was told so far."""

    patient_id: str = ""
    received: Counter[str] = field(default_factory=Counter)
    repeats: int = 0
    refused: int = 0


def event_line(event: FeedbackEvent, *, repeat: bool = False) -> str:
    """How an event is printed: its kind, severity and message."""
    mark = " (a repeat: dropped)" if repeat else ""
    return f"patient app: {event.kind.value} [{event.severity.value}]{mark} {event.message}"


def register(
    client: httpx.Client, *, token: str, url: str, kinds: Sequence[Kind]
) -> dict[str, Any]:
    """``PUT /v1/me/feedback``: the registration with its secret; raises
    :class:`PatientAppError` when the care-team API refuses or cannot be reached."""
    body = {"url": url, "kinds": [k.value for k in kinds]}
    try:
        response = client.put(
            FEEDBACK_PATH, json=body, headers={"Authorization": f"Bearer {token}"}
        )
    except httpx.HTTPError as exc:
        raise PatientAppError(
            f"cannot reach the care-team API at {client.base_url}: {exc}"
        ) from exc
    if response.status_code != 200:
        try:
            detail = response.json().get("detail", "")
        except ValueError:
            detail = response.text[:200]
        hint = ""
        if response.status_code == 422 and "loopback" in str(detail):
            hint = " (start the care-team API and the alerts worker with"
            hint += " PGHD_FEEDBACK_ALLOW_LOOPBACK_HTTP=true)"
        raise PatientAppError(
            f"the care-team API refused the registration (HTTP {response.status_code}):"
            f" {detail}{hint}"
        )
    answer: dict[str, Any] = response.json()
    return answer


@contextlib.contextmanager
def patient_app(
    *,
    port: int,
    care_api_url: str,
    token: str,
    kinds: Sequence[Kind],
    echo: Callable[[str], None],
    timeout_s: float = 10.0,
) -> Iterator[PatientApp]:
    """The app, listening and registered, for the ``with`` block."""
    seen = PatientApp()

    def on_event(event: FeedbackEvent, repeat: bool) -> None:
        if repeat:
            seen.repeats += 1
        else:
            seen.received[event.kind.value] += 1
        echo(event_line(event, repeat=repeat))

    def on_refused(reason: str) -> None:
        seen.refused += 1
        echo(f"patient app: REFUSED a delivery: {reason}")

    with (
        PatientAppReceiver(port=port, on_event=on_event, on_refused=on_refused) as receiver,
        httpx.Client(base_url=care_api_url, timeout=timeout_s) as client,
    ):
        answer = register(client, token=token, url=receiver.url, kinds=kinds)
        receiver.secret = str(answer["secret"])
        seen.patient_id = str(answer.get("patient_id", ""))
        echo(
            f"patient app: {receiver.url} registered for {seen.patient_id}"
            f" ({', '.join(k.value for k in kinds)})"
        )
        yield seen
