"""Import jobs: an uploaded Apple Health export parsed and produced in the background.

``POST /v1/imports/apple-health`` spools the upload to a temp file and hands it to
:meth:`ImportJobs.start`; the job parses it (:mod:`ingest.adapters.apple_health`, a batch at
a time in a worker thread so the event loop keeps serving), and takes every batch through
the same path as ``POST /v1/measurements``: :func:`~ingest.intake.triage` (validation,
units, consent) then :func:`~ingest.intake.produce` (returns once Kafka acknowledged). When
Kafka is down a batch is retried with backoff for up to ``PRODUCE_PATIENCE_S``, then the job
fails; its readings carry deterministic event ids, so uploading the export again is safe.

Jobs live in the memory of the ingest instance that took the upload: ``GET
/v1/imports/{id}`` must reach that instance (behind a load balancer, use session affinity or
poll the instance named by the ``Location`` it answered), and a restart forgets them (a job
running then is marked failed first if the shutdown is orderly). The temp file is deleted
when the job ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from ingest.adapters.apple_health import candidate_batches
from ingest.intake import Candidate, Registry, produce, triage
from ingest.metrics import IngestMetrics
from pghd.apple_health import ExportError, ExportStats, open_export
from pghd.contracts import Measurement
from pghd.problems import ProblemError
from pghd.service.producer import Gateway

__all__ = ["BATCH", "PRODUCE_PATIENCE_S", "ImportJob", "ImportJobs"]

logger = logging.getLogger(__name__)

BATCH = 500
PRODUCE_PATIENCE_S = 300.0
KEEP_FINISHED = 200

State = Literal["running", "done", "failed"]


@dataclass
class ImportJob:
    """One import and its progress (what ``GET /v1/imports/{id}`` shows)."""

    source: str
    patient_id: str
    path: Path
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: State = "running"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    stats: ExportStats = field(default_factory=ExportStats)
    bytes_read: int = 0
    bytes_total: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    error: str | None = None

    def view(self) -> dict[str, Any]:
        """The job as JSON: progress, counts by reason, skipped types."""
        rejected = self.rejected + self.stats.problems
        return {
            "id": self.id,
            "kind": "apple-health",
            "patient_id": self.patient_id,
            "state": self.state,
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "bytes_read": self.bytes_read,
            "bytes_total": self.bytes_total,
            "records_read": self.stats.records,
            "readings": self.stats.total_readings,
            "accepted": self.accepted,
            "rejected": sum(rejected.values()),
            "rejected_by_reason": dict(rejected),
            "records_by_type": dict(self.stats.by_type),
            "readings_by_metric": dict(self.stats.readings),
            "skipped_types": dict(self.stats.skipped),
            "error": self.error,
        }


class ImportJobs:
    """The import jobs of this ingest instance, and their tasks."""

    def __init__(self, *, keep_finished: int = KEEP_FINISHED) -> None:
        self._jobs: dict[str, ImportJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._keep = keep_finished

    def get(self, job_id: str) -> ImportJob | None:
        return self._jobs.get(job_id)

    def start(
        self,
        job: ImportJob,
        *,
        gateway: Gateway,
        registry: Registry,
        metrics: IngestMetrics,
        retry_after_s: int,
        max_age: timedelta | None = None,
    ) -> ImportJob:
        """Register ``job`` and run it in the background."""
        self._forget_old()
        self._jobs[job.id] = job
        task = asyncio.create_task(
            run_import(
                job,
                gateway=gateway,
                registry=registry,
                metrics=metrics,
                retry_after_s=retry_after_s,
                max_age=max_age,
            ),
            name=f"import-{job.id}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.state != "running"]
        for job in finished[: max(0, len(finished) - self._keep + 1)]:
            del self._jobs[job.id]

    async def close(self) -> None:
        """Cancel the running jobs (they end ``failed``) and wait for them."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _next(batches: Iterator[list[Candidate]]) -> list[Candidate] | None:
    return next(batches, None)


def _still_allowed(reading: Measurement, *, registry: Registry, source: str) -> bool:
    """Whether the registry still lets ``source`` store ``reading`` for its patient."""
    pid = reading.patient_id
    return (
        registry.source_refusal(source=source, patient_id=pid) is None
        and registry.refusal(patient_id=pid, metric=reading.metric) is None
    )


async def _produce_patiently(
    gateway: Gateway,
    outcomes: list[Any],
    *,
    job: ImportJob,
    registry: Registry,
    metrics: IngestMetrics,
    retry_after_s: int,
) -> int:
    """Produce the accepted readings of ``outcomes``, retrying while Kafka refuses; how
    many were written."""
    good = [o.measurement for o in outcomes if o.measurement is not None]
    deadline = time.monotonic() + PRODUCE_PATIENCE_S
    wait = 0.5
    while True:
        # asked again on every attempt: a patient withdrawn or erased while Kafka refused
        # must not have their readings written after all
        allowed = [m for m in good if _still_allowed(m, registry=registry, source=job.source)]
        if len(allowed) < len(good):
            dropped = len(good) - len(allowed)
            job.rejected.update({"consent": dropped})
            logger.warning("import %s: %d readings no longer allowed, dropped", job.id, dropped)
            good = allowed
        try:
            await produce(
                gateway,
                good,
                metrics=metrics,
                request_id=f"import-{job.id}",
                retry_after_s=retry_after_s,
            )
            return len(good)
        except ProblemError as exc:
            if time.monotonic() + wait > deadline:
                raise ExportError(f"Kafka kept refusing the readings: {exc.detail}") from None
            logger.warning("import %s: Kafka unavailable, retrying in %.1fs", job.id, wait)
            await asyncio.sleep(wait)
            wait = min(wait * 2, float(retry_after_s) * 2)


async def run_import(
    job: ImportJob,
    *,
    gateway: Gateway,
    registry: Registry,
    metrics: IngestMetrics,
    retry_after_s: int,
    max_age: timedelta | None = None,
) -> None:
    """Parse ``job.path`` and produce its readings batch by batch, recording progress;
    readings older than ``max_age`` (the raw retention) are counted as refused."""
    logger.info("import %s for source %s started", job.id, job.source)
    try:
        with open_export(job.path) as stream:
            job.bytes_total = stream.total
            batches = candidate_batches(
                stream, patient_id=job.patient_id, size=BATCH, stats=job.stats
            )
            while (batch := await asyncio.to_thread(_next, batches)) is not None:
                job.bytes_read = stream.position
                outcomes = triage(
                    batch,
                    source=job.source,
                    received_at=datetime.now(UTC),
                    registry=registry,
                    max_age=max_age,
                    metrics=metrics,
                )
                accepted = await _produce_patiently(
                    gateway,
                    outcomes,
                    job=job,
                    registry=registry,
                    metrics=metrics,
                    retry_after_s=retry_after_s,
                )
                job.accepted += accepted
                job.rejected.update(o.reason for o in outcomes if o.reason is not None)
            job.bytes_read = stream.position
        job.state = "done"
    except ExportError as exc:
        job.state, job.error = "failed", str(exc)
    except asyncio.CancelledError:
        job.state, job.error = "failed", "ingest stopped before the import finished"
        raise
    except Exception:
        logger.exception("import %s failed unexpectedly", job.id)
        job.state, job.error = "failed", "unexpected error; it has been logged"
    finally:
        job.finished_at = datetime.now(UTC)
        job.path.unlink(missing_ok=True)
        logger.info(
            "import %s %s: %d records, %d accepted, %d rejected",
            job.id,
            job.state,
            job.stats.records,
            job.accepted,
            sum(job.rejected.values()),
        )
