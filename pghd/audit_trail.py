"""Appending an :class:`~pghd.audit.AuditEvent` for every request of an API's patient routes.

:class:`AuditTrail` is pure ASGI middleware. While a request runs, the route's code says who
asks (:func:`note_agent`, from the authentication dependency) and which patients it reads
or writes (:func:`note_patients`); when the answer starts, the middleware sends the event
to the service's sink and only then lets the answer out. If the event cannot be written the
client gets ``503`` + ``Retry-After`` instead of the answer: nothing is read without a trace
(a write may still have taken effect; the audit then lacks it, and the error is logged). That
refusal is a problem document, or whatever the service's ``refusal`` makes of it for the path
(the care-team API's ``/fhir/`` routes answer an OperationOutcome).

:func:`audited_path` says which paths are audited: those under one of the service's
prefixes (``/v1/``, ``/fhir/``) except its public ones (``/fhir/metadata``, which reads no
patient's data).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pghd.audit import AuditAgent, AuditEvent, new_event

__all__ = [
    "AUDIT_UNAVAILABLE",
    "AuditSink",
    "AuditTrail",
    "Refusal",
    "audited_path",
    "install_audit_trail",
    "note_agent",
    "note_patients",
    "problem_refusal",
]

logger = logging.getLogger(__name__)

ANONYMOUS = AuditAgent(name="anonymous", role="none")

AUDIT_UNAVAILABLE = "the audit trail cannot be written now; retry later"

Refusal = Callable[[str], tuple[str, bytes]]
"""The answer to a request whose event could not be written, for its path: (content type,
body); the status is 503 and ``Retry-After`` is added."""


def problem_refusal(path: str) -> tuple[str, bytes]:
    """The problem document of a request whose event could not be written."""
    body = orjson.dumps(
        {
            "type": "urn:pghd:problem:audit-unavailable",
            "title": "Service Unavailable",
            "status": 503,
            "detail": AUDIT_UNAVAILABLE,
        }
    )
    return "application/problem+json", body


def audited_path(path: str, *, prefixes: Collection[str], public: Collection[str] = ()) -> bool:
    """Whether a request to ``path`` is audited: under one of ``prefixes`` and not one of the
    ``public`` paths (exact paths, which read no patient's data)."""
    return path not in public and any(path.startswith(prefix) for prefix in prefixes)


class AuditSink(Protocol):
    """Where events go (``pghd.audit.v1``); raises when the event was not written."""

    async def write(self, event: AuditEvent) -> None: ...


@dataclass
class _Context:
    agent: AuditAgent = ANONYMOUS
    patients: set[str] = field(default_factory=set)


_current: ContextVar[_Context | None] = ContextVar("pghd_audit", default=None)


def note_agent(agent: AuditAgent) -> None:
    """Record who makes the current request (no-op outside an audited request)."""
    context = _current.get()
    if context is not None:
        context.agent = agent


def note_patients(patient_ids: Iterable[str]) -> None:
    """Record patients whose data the current request reads or writes (no-op outside one)."""
    context = _current.get()
    if context is not None:
        context.patients.update(patient_ids)


class AuditTrail:
    """Audits the requests whose path ``audited`` accepts (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: str,
        sink: Callable[[], AuditSink | None],
        audited: Callable[[str], bool],
        retry_after_s: int = 5,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        refusal: Refusal = problem_refusal,
    ) -> None:
        self.app = app
        self.service = service
        self.sink = sink
        self.audited = audited
        self.retry_after_s = retry_after_s
        self.clock = clock
        self.refusal = refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.audited(scope["path"]):
            await self.app(scope, receive, send)
            return
        context = _Context()
        token = _current.set(context)
        swallowing = started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal swallowing, started
            if message["type"] == "http.response.start":
                started = True
                if await self._record(scope, context, int(message["status"])):
                    await send(message)
                    return
                swallowing = True
                await self._refuse(send, scope["path"])
            elif not swallowing:
                await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            if not started:  # the outer error handler answers 500: record that
                await self._record(scope, context, 500)
            raise
        finally:
            _current.reset(token)

    async def _record(self, scope: Scope, context: _Context, status: int) -> bool:
        route: Any = scope.get("route")
        template = getattr(route, "path", None)
        state = scope.get("state") or {}
        operation = f"{scope['method']} {template}"
        try:
            event = new_event(
                recorded=self.clock(),
                service=self.service,
                method=scope["method"],
                route=template if isinstance(template, str) else "unmatched",
                resource=scope["path"],
                agent=context.agent,
                patients=sorted(context.patients),
                status=status,
                request_id=str(state.get("request_id") or _header_request_id(scope)),
            )
            sink = self.sink()
            if sink is None:
                raise RuntimeError("the audit sink is not running")
            await sink.write(event)
        except Exception as exc:
            logger.error(
                "audit event of %s (status %d) not written, answering 503: %s",
                operation,
                status,
                exc,
            )
            return False
        return True

    async def _refuse(self, send: Send, path: str) -> None:
        content_type, body = self.refusal(path)
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", content_type.encode("latin-1")),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(self.retry_after_s).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})


def _header_request_id(scope: Scope) -> str:
    """The client's ``X-Request-ID`` (up to 128 safe characters), else a new one."""
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if 0 < len(candidate) <= 128 and candidate.isprintable() and " " not in candidate:
                return candidate
    return uuid.uuid4().hex


def install_audit_trail(
    app: Any,
    *,
    service: str,
    prefix: str | Collection[str],
    retry_after_s: int,
    public: Collection[str] = (),
    refusal: Refusal = problem_refusal,
) -> None:
    """Audit ``app``'s requests under ``prefix`` (one or several), but for the ``public``
    paths, to the sink its lifespan puts in ``app.state.audit_sink`` (None until then:
    audited requests answer 503, worded by ``refusal``)."""
    prefixes = (prefix,) if isinstance(prefix, str) else tuple(prefix)
    public_paths = frozenset(public)
    app.add_middleware(
        AuditTrail,
        service=service,
        sink=lambda: app.state.audit_sink,
        audited=lambda path: audited_path(path, prefixes=prefixes, public=public_paths),
        retry_after_s=retry_after_s,
        refusal=refusal,
    )
