"""Reading request bodies: every route takes its body through :func:`read_body`.

It refuses (413) a body over the configured limit without reading all of it. A body sent
with ``Content-Encoding: gzip`` is inflated as it arrives, and the same limit applies to the
inflated size, so a gzip bomb is refused after inflating at most ``limit`` bytes of it
(plus one chunk); corrupt gzip is a 400, any other content coding a 415 that names the
supported ones (RFC 7694: in its ``Accept-Encoding`` header too).
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import Request

from pghd.problems import ProblemError

__all__ = ["SUPPORTED_ENCODINGS", "parse_json", "read_body", "read_json"]

SUPPORTED_ENCODINGS = ("gzip", "identity")
"""Content codings a request body may have (``x-gzip`` is taken as ``gzip``, RFC 9110)."""

_GZIP_WBITS = 16 + zlib.MAX_WBITS  # gzip header and trailer, nothing else
_INFLATE_STEP = 64 * 1024  # most output produced per decompress call


async def read_body(request: Request, *, limit: int) -> bytes:
    """The request body, decoded, refusing (413) anything over ``limit`` bytes.

    ``limit`` holds for the bytes on the wire and, for a gzip body, for the inflated bytes.
    """
    gzipped = _is_gzip(request.headers.get("content-encoding"))
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, inflated=False)
    if gzipped:
        return await _inflate(_limited(request.stream(), limit=limit), limit=limit)
    return b"".join([chunk async for chunk in _limited(request.stream(), limit=limit)])


async def read_json(request: Request, *, limit: int) -> Any:
    """The body (as :func:`read_body` reads it) parsed as JSON; 400 problem when it is not."""
    return parse_json(await read_body(request, limit=limit))


def parse_json(body: bytes) -> Any:
    """``body`` parsed as JSON; a 400 ``malformed-json`` problem saying where it is not."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProblemError(
            status=400, slug="malformed-json", detail=f"body is not JSON: {exc}"
        ) from None


def _is_gzip(header: str | None) -> bool:
    """Whether the body is gzip (True) or sent as is (False); 415 for anything else."""
    codings = [c.strip().lower() for c in (header or "").split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if not codings:
        return False
    if codings in (["gzip"], ["x-gzip"]):
        return True
    raise ProblemError(
        status=415,
        slug="unsupported-content-encoding",
        detail=(
            f"Content-Encoding {header!r} is not supported; send the body as is or with "
            f"one of: {', '.join(SUPPORTED_ENCODINGS)}"
        ),
        headers={"Accept-Encoding": ", ".join(SUPPORTED_ENCODINGS)},
    )


def _too_large(limit: int, *, inflated: bool) -> ProblemError:
    what = "the decompressed body" if inflated else "the body"
    return ProblemError(
        status=413, slug="body-too-large", detail=f"{what} is larger than {limit} bytes"
    )


async def _limited(chunks: AsyncIterator[bytes], *, limit: int) -> AsyncIterator[bytes]:
    """The chunks of the body, raising 413 as soon as their total passes ``limit``."""
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, inflated=False)
        yield chunk


def _corrupt(reason: str) -> ProblemError:
    return ProblemError(
        status=400, slug="malformed-gzip", detail=f"the gzip body cannot be decompressed: {reason}"
    )


async def _inflate(chunks: AsyncIterator[bytes], *, limit: int) -> bytes:
    """Inflate a gzip stream (one or more members) chunk by chunk, at most ``limit`` bytes.

    ``decompress`` is asked for at most what is left of the limit (plus one byte, to notice
    going over), so memory stays bounded whatever the compression ratio.
    """
    out = bytearray()
    inflater = zlib.decompressobj(_GZIP_WBITS)
    seen = False
    async for chunk in chunks:
        data = chunk
        seen = seen or bool(chunk)
        while True:
            if inflater.eof:
                if not data:
                    break
                # Concatenated members are one gzip stream (RFC 1952 section 2.2).
                inflater = zlib.decompressobj(_GZIP_WBITS)
            step = min(_INFLATE_STEP, limit - len(out) + 1)
            try:
                part = inflater.decompress(data, step)
            except zlib.error as exc:
                raise _corrupt(str(exc)) from None
            out += part
            if len(out) > limit:
                raise _too_large(limit, inflated=True)
            data = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
            if not data and len(part) < step:
                break
    if seen and not inflater.eof:
        raise _corrupt("it ends before the gzip stream does")
    return bytes(out)
