"""Grafana annotations for alerts, through ``grafana-client``, off the notification path.

:class:`GrafanaAnnotator` executes :class:`~alerts.lifecycle.Annotate` actions against
Grafana's annotations API: ``POST /api/annotations`` (a point, or a region when the action
has ``time_end``) and, when an alert resolves and its opening annotation id is known,
``PATCH /api/annotations/{id}`` setting ``timeEnd`` so the point becomes a region.
:class:`AnnotationQueue` runs them one at a time in a background task with retries and
exponential backoff; a full queue or a request that keeps failing drops that annotation
(logged by ids) and never blocks or delays notifications. The annotation id of each alert
is kept in the patient's table state through the ``remember`` callback and read back
through ``lookup``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError

from alerts.lifecycle import Annotate

__all__ = ["AnnotationQueue", "GrafanaAnnotator", "annotation_payload", "epoch_ms"]

logger = logging.getLogger(__name__)

Lookup = Callable[[Annotate], int | None]
Remember = Callable[[Annotate, int], None]
Outcome = Callable[[str], None]


def epoch_ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def annotation_payload(
    action: Annotate, *, dashboard_uid: str | None = None, panel_id: int | None = None
) -> dict[str, Any]:
    """The documented body of ``POST /api/annotations`` for an action (unset fields left out)."""
    payload: dict[str, Any] = {
        "time": epoch_ms(action.time),
        "tags": list(action.tags),
        "text": action.text,
    }
    if action.time_end is not None:
        payload["timeEnd"] = epoch_ms(action.time_end)
    if dashboard_uid is not None:
        payload["dashboardUID"] = dashboard_uid
    if panel_id is not None:
        payload["panelId"] = panel_id
    return payload


class GrafanaAnnotator:
    """Blocking calls to one Grafana (run them in a thread)."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        dashboard_uid: str | None = None,
        panel_id: int | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.api = GrafanaApi.from_url(url, credential=token, timeout=timeout_s)
        self.dashboard_uid = dashboard_uid
        self.panel_id = panel_id

    def execute(self, action: Annotate, *, existing_id: int | None) -> int:
        """Write the annotation; returns its id. Raises on any HTTP or network error."""
        if action.kind == "resolved" and existing_id is not None and action.time_end is not None:
            self.api.annotations.partial_update_annotation(
                annotations_id=existing_id,
                time_from=epoch_ms(action.time),
                time_to=epoch_ms(action.time_end),
                tags=list(action.tags),
                text=action.text,
            )
            return existing_id
        payload = annotation_payload(
            action, dashboard_uid=self.dashboard_uid, panel_id=self.panel_id
        )
        response = self.api.client.POST("/annotations", json=payload)
        return int(response["id"])

    def delete(self, annotation_id: int) -> None:
        """Delete one annotation (an erasure); a 404 (already gone) is not an error."""
        try:
            self.api.annotations.delete_annotations_by_id(annotations_id=annotation_id)
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise


class AnnotationQueue:
    """Annotations waiting to be written, one background consumer, retries with backoff."""

    def __init__(
        self,
        annotator: GrafanaAnnotator,
        *,
        lookup: Lookup,
        remember: Remember,
        attempts: int = 5,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        maxsize: int = 10_000,
        on_outcome: Outcome | None = None,
    ) -> None:
        """``on_outcome`` is told "written", "retry", "failed" or "dropped" (metrics)."""
        self.annotator = annotator
        self.on_outcome = on_outcome or (lambda outcome: None)
        self.lookup = lookup
        self.remember = remember
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.queue: asyncio.Queue[Annotate] = asyncio.Queue(maxsize)

    def submit(self, action: Annotate) -> None:
        """Queue an annotation; never waits (a full queue drops it, logged)."""
        try:
            self.queue.put_nowait(action)
        except asyncio.QueueFull:
            self.on_outcome("dropped")
            logger.error(
                "annotation queue full: %s of alert %s dropped", action.kind, action.alert_id
            )

    def forget(self, patient_id: str) -> int:
        """Drop the queued annotations of ``patient_id`` (an erasure); how many."""
        kept: list[Annotate] = []
        dropped = 0
        while not self.queue.empty():
            action = self.queue.get_nowait()
            self.queue.task_done()
            if action.patient_id == patient_id:
                dropped += 1
            else:
                kept.append(action)
        for action in kept:
            self.queue.put_nowait(action)
        return dropped

    async def write(self, action: Annotate) -> int | None:
        """Write one annotation with retries; its id, or None when every attempt failed."""
        for attempt in range(1, self.attempts + 1):
            try:
                existing = self.lookup(action)
                annotation_id = await asyncio.to_thread(
                    self.annotator.execute, action, existing_id=existing
                )
            except Exception as exc:
                self.on_outcome("failed" if attempt == self.attempts else "retry")
                if attempt == self.attempts:
                    logger.error(
                        "annotation %s of alert %s failed %d times, dropped: %s",
                        action.kind,
                        action.alert_id,
                        attempt,
                        type(exc).__name__,
                    )
                    return None
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
                logger.warning(
                    "annotation %s of alert %s failed (attempt %d, retry in %.1fs): %s",
                    action.kind,
                    action.alert_id,
                    attempt,
                    delay,
                    type(exc).__name__,
                )
                await asyncio.sleep(delay)
                continue
            self.on_outcome("written")
            if action.kind == "opened":
                self.remember(action, annotation_id)
            logger.info(
                "annotation %s of alert %s: id %d", action.kind, action.alert_id, annotation_id
            )
            return annotation_id
        return None

    async def run(self) -> None:
        """Consume the queue forever (cancel to stop)."""
        while True:
            action = await self.queue.get()
            try:
                await self.write(action)
            finally:
                self.queue.task_done()
