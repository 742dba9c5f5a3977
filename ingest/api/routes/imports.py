"""``POST /v1/imports/apple-health`` and ``GET /v1/imports/{id}``: whole-export imports.

The body is an Apple Health ``export.zip`` (``application/zip`` or
``application/octet-stream``; the bare ``export.xml`` as ``application/xml`` works too). It
is streamed to a temp file, refused with 413 past ``PGHD_INGEST_MAX_IMPORT_BYTES`` (4 GiB by
default) and with 422 when it is not an Apple Health export (or declares XML entities),
then imported in the background (:mod:`ingest.imports`): the answer is 202 with the job and
its ``Location``, which ``GET`` reports progress on until it is ``done`` or ``failed``.
Jobs belong to the ingest instance that took the upload and to the API key's source.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel

from ingest.deps import (
    GatewayDep,
    ImportsDep,
    MetricsDep,
    RegistryDep,
    SettingsDep,
    SourceDep,
)
from ingest.imports import ImportJob
from pghd.apple_health import ExportError, check_export
from pghd.contracts import ID_PATTERN
from pghd.problems import JsonResponse, ProblemError, problem_responses

__all__ = ["ImportStatus", "router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/imports", tags=["imports"])

CONTENT_TYPES = (
    "application/zip",
    "application/x-zip-compressed",
    "application/octet-stream",
    "application/xml",
    "text/xml",
)
_FLUSH = 1024 * 1024


class ImportStatus(BaseModel):
    """An import job and its progress."""

    id: str
    kind: Literal["apple-health"]
    patient_id: str
    state: Literal["running", "done", "failed"]
    created_at: str
    finished_at: str | None
    bytes_read: int
    bytes_total: int
    records_read: int
    readings: int
    accepted: int
    rejected: int
    rejected_by_reason: dict[str, int]
    records_by_type: dict[str, int]
    readings_by_metric: dict[str, int]
    skipped_types: dict[str, int]
    error: str | None


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "An Apple Health export.zip (or its export.xml)",
        "content": {
            media: {"schema": {"type": "string", "format": "binary"}}
            for media in ("application/zip", "application/octet-stream")
        },
    }
}


async def _spool(request: Request, *, limit: int) -> Path:
    """Stream the body into a temp file; 413 past ``limit`` bytes, 422 when empty."""
    too_large = ProblemError(
        status=413,
        slug="body-too-large",
        detail=f"the export is larger than {limit} bytes (PGHD_INGEST_MAX_IMPORT_BYTES)",
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    handle, name = tempfile.mkstemp(prefix="pghd-import-", suffix=".upload")
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as out:
            size, pending = 0, bytearray()
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large
                pending += chunk
                if len(pending) >= _FLUSH:
                    await asyncio.to_thread(out.write, bytes(pending))
                    pending.clear()
            await asyncio.to_thread(out.write, bytes(pending))
        if size == 0:
            raise ProblemError(status=422, slug="empty-body", detail="the body is empty")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _check_content(request: Request) -> None:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in CONTENT_TYPES:
        raise ProblemError(
            status=415,
            slug="unsupported-media-type",
            detail=f"send the export as one of: {', '.join(CONTENT_TYPES)}",
        )
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ProblemError(
            status=415,
            slug="unsupported-content-encoding",
            detail="send the export as is (it is compressed already)",
        )


@router.post(
    "/apple-health",
    status_code=202,
    summary="Upload an Apple Health export to import in the background",
    response_model=ImportStatus,
    responses={
        202: {"headers": {"Location": {"description": "the job", "schema": {"type": "string"}}}},
        **problem_responses(
            {
                401: "Missing or unknown API key",
                413: "Export larger than PGHD_INGEST_MAX_IMPORT_BYTES",
                415: "Not sent as application/zip, application/octet-stream or XML",
                422: "Not an Apple Health export, or the XML declares entities",
                503: "Kafka cannot take writes now; retry after Retry-After seconds",
            }
        ),
    },
    openapi_extra=_UPLOAD_BODY,
)
async def upload_apple_health(
    request: Request,
    source: SourceDep,
    settings: SettingsDep,
    gateway: GatewayDep,
    metrics: MetricsDep,
    registry: RegistryDep,
    imports: ImportsDep,
    patient_id: Annotated[str, Query(pattern=ID_PATTERN, description="The export's patient")],
) -> JsonResponse:
    """Spool the export, check it is one, and start importing it; 202 with the job."""
    _check_content(request)
    path = await _spool(request, limit=settings.max_import_bytes)
    try:
        await asyncio.to_thread(check_export, path)
    except (ExportError, OSError) as exc:
        path.unlink(missing_ok=True)
        raise ProblemError(status=422, slug="not-an-export", detail=str(exc)) from None
    job = imports.start(
        ImportJob(source=source, patient_id=patient_id, path=path),
        gateway=gateway,
        registry=registry,
        metrics=metrics,
        retry_after_s=settings.retry_after_s,
        max_age=settings.max_reading_age,
    )
    logger.info(
        "request %s source=%s: import %s started",
        getattr(request.state, "request_id", "-"),
        source,
        job.id,
    )
    location = request.url_for("get_import", job_id=job.id).path
    return JsonResponse(job.view(), status_code=202, headers={"Location": location})


@router.get(
    "/{job_id}",
    name="get_import",
    summary="Progress of an import",
    response_model=ImportStatus,
    responses=problem_responses(
        {401: "Missing or unknown API key", 404: "No such import on this ingest instance"}
    ),
)
async def get_import(
    source: SourceDep,
    imports: ImportsDep,
    job_id: Annotated[str, PathParam(max_length=64)],
) -> JsonResponse:
    """The job's state and counts; 404 for jobs of other sources or other instances."""
    job = imports.get(job_id)
    if job is None or job.source != source:
        raise ProblemError(
            status=404,
            slug="no-such-import",
            detail=f"no import {job_id!r} on this ingest instance (jobs are per instance)",
        )
    return JsonResponse(job.view())
