"""Counting an HTTP service's answers for Prometheus, and giving each request an id.

Both services count every answered request by method, route template and status
(``http_requests_total``, :func:`requests_counter`) with the pure ASGI middleware
:class:`RequestObserver`. Ingest also has it give every request an id (``X-Request-ID``,
taken from the client when it is a sane token, else made up), which routes log and the
response carries back.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["REQUEST_ID_HEADER", "RequestObserver", "requests_counter"]

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def requests_counter(registry: CollectorRegistry) -> Counter:
    """The counter of answered requests, by method, route and status, in ``registry``."""
    return Counter(
        "http_requests",
        "HTTP requests answered, by method, route and status",
        ["method", "route", "status"],
        registry=registry,
    )


class RequestObserver:
    """Pure ASGI middleware: requests counted in ``requests`` by method, route and status;
    with ``request_ids``, a request id in (``scope["state"]["request_id"]``) and out."""

    def __init__(self, app: ASGIApp, *, requests: Counter, request_ids: bool = False) -> None:
        self.app = app
        self.requests = requests
        self.request_ids = request_ids

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope) if self.request_ids else None
        if request_id is not None:
            scope.setdefault("state", {})["request_id"] = request_id
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if request_id is not None:
                    MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.requests.labels(
                method=scope["method"], route=_route_of(scope), status=str(status)
            ).inc()


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _REQUEST_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex


def _route_of(scope: Scope) -> str:
    route: Any = scope.get("route")
    path: object = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
