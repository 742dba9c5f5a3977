"""A patient's app, as small as one can be: it takes feedback deliveries on the loopback.

What any app registered with ``PUT /v1/me/feedback`` does with a delivery
(:func:`read_delivery`): check ``X-Pghd-Signature`` with the secret the registration answered,
with the very code ingest checks webhooks with (:func:`pghd.signatures.verify_timestamped`),
then read the body as a :class:`~pghd.feedback.events.FeedbackEvent`; drop a repeat by its
``id`` (a retry whose first answer was lost, a resend after the worker restarted).

:class:`PatientAppReceiver` is that app as a small HTTP server on 127.0.0.1 (a thread), for
``pghd simulate --patient-app``: ``200`` to a verified delivery (a repeat too, so the sender
stops), ``401`` to one whose signature does not verify, ``400`` to a body that is no event,
``503`` until it knows its secret.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import ValidationError

from pghd import wire
from pghd.feedback.events import FeedbackEvent
from pghd.signatures import (
    DEFAULT_TOLERANCE_S,
    PGHD_SIGNATURE_HEADER,
    SignatureRefused,
    verify_timestamped,
)

__all__ = ["MAX_BODY_BYTES", "PatientAppReceiver", "read_delivery"]

MAX_BODY_BYTES = 64 * 1024


def read_delivery(
    signature: str | None,
    body: bytes,
    *,
    secret: str,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> FeedbackEvent:
    """The event of one delivery whose signature verifies with ``secret``; raises
    :class:`~pghd.signatures.SignatureRefused` (forged, stale) or ``ValueError`` (no event)."""
    verify_timestamped(
        signature, body, secrets=[secret.encode("ascii")], now=now, tolerance_s=tolerance_s
    )
    try:
        return wire.decode(FeedbackEvent, body)
    except ValidationError as exc:
        raise ValueError(f"not a feedback event: {exc.error_count()} errors") from exc


class PatientAppReceiver:
    """Takes deliveries on ``127.0.0.1:port`` (0: a free port); ``on_event(event, repeat)``
    for each verified one, ``on_refused(reason)`` for each refused."""

    def __init__(
        self,
        *,
        port: int,
        on_event: Callable[[FeedbackEvent, bool], None],
        on_refused: Callable[[str], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.secret: str | None = None
        """known once the registration answered it; until then deliveries get 503"""
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self._answer(413)
                    return
                body = self.rfile.read(length)
                self._answer(receiver.take(self.headers.get(PGHD_SIGNATURE_HEADER), body))

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self._on_event, self._on_refused, self._clock = on_event, on_refused, clock
        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="patient-app", daemon=True
        )

    @property
    def url(self) -> str:
        """Where the app takes deliveries (what it registers)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/feedback"

    def take(self, signature: str | None, body: bytes) -> int:
        """One delivery: the HTTP status to answer it with."""
        secret = self.secret
        if secret is None:
            return 503
        try:
            event = read_delivery(signature, body, secret=secret, now=self._clock())
        except SignatureRefused as exc:
            self._on_refused(exc.detail)
            return 401
        except ValueError as exc:
            self._on_refused(str(exc))
            return 400
        with self._lock:
            repeat = event.id in self._seen
            self._seen.add(event.id)
        self._on_event(event, repeat)
        return 200

    def start(self) -> PatientAppReceiver:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> PatientAppReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
