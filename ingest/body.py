"""Reading request bodies: every route takes its body through :func:`read_body`.

It refuses (413) a body over the configured limit without reading all of it.
"""

from __future__ import annotations

from fastapi import Request

from ingest.problems import ProblemError

__all__ = ["read_body"]


async def read_body(request: Request, *, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes without reading it all."""
    too_large = ProblemError(
        status=413, slug="body-too-large", detail=f"the body is larger than {limit} bytes"
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)
