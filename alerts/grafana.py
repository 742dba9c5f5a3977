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

Erasure (:meth:`alerts.agents.Alerts.erase`) finds a patient's annotations in Grafana by
their ``patient:<id>`` tag (:meth:`GrafanaAnnotator.find`) and deletes each
(:meth:`GrafanaAnnotator.delete`): the ids kept in the state name only the "opened" ones.
The queue writes nothing for a patient the ``alive`` predicate rejects (erased, or being
erased), and deletes an annotation whose patient was erased while it was being written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError

from alerts.lifecycle import Annotate, patient_tag

__all__ = ["AnnotationQueue", "GrafanaAnnotator", "annotation_payload", "epoch_ms"]

logger = logging.getLogger(__name__)

Lookup = Callable[[Annotate], int | None]
Remember = Callable[[Annotate, int], None]
Outcome = Callable[[str], None]
Alive = Callable[[str], bool]

#: The end of Grafana's time axis for a search (9999-12-31, epoch ms).
_END_OF_TIME_MS = 253402300799999


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

    def find(self, patient_id: str, *, limit: int = 100) -> list[int]:
        """The ids of every annotation tagged ``pghd`` and ``patient:<patient_id>``, through
        Grafana's search (``GET /api/annotations?tags=...&type=annotation&limit=...``).

        Grafana answers at most ``limit`` annotations, latest end first, and keeps those with
        ``time <= to`` and ``timeEnd >= from`` (only when both are given): each next page asks
        for ``to`` = the earliest end of the page before (an annotation left out ends no later
        and so starts no later), until a page is short. Grafana splits a tag at every ``:``,
        so ``patient:a:b`` also matches patient ``a``'s: only annotations that carry the exact
        tag are returned. Raises on any HTTP or network error."""
        tag = patient_tag(patient_id)
        seen: set[int] = set()
        found: list[int] = []
        to = _END_OF_TIME_MS
        while to >= 1:
            params = [
                ("tags", "pghd"),
                ("tags", tag),
                ("type", "annotation"),
                ("limit", str(limit)),
                ("from", "1"),
                ("to", str(to)),
            ]
            page = self.api.client.GET("/annotations", params=params)
            fresh = [item for item in page if int(item["id"]) not in seen]
            seen.update(int(item["id"]) for item in fresh)
            found += [int(item["id"]) for item in fresh if tag in (item.get("tags") or ())]
            if len(page) < limit:
                break
            earliest = min(int(item.get("timeEnd") or item.get("time") or 0) for item in page)
            # a full page of annotations ending at the same millisecond: step past them (more
            # there are found when the erasure is asked for again, after these are deleted)
            to = earliest if fresh else earliest - 1
        return found

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
        alive: Alive | None = None,
    ) -> None:
        """``on_outcome`` is told "written", "retry", "failed" or "dropped" (metrics);
        ``alive`` says whether a patient may still be annotated (has alert state and is not
        being erased)."""
        self.annotator = annotator
        self.on_outcome = on_outcome or (lambda outcome: None)
        self.alive = alive or (lambda patient_id: True)
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
        """Write one annotation with retries; its id, or None when every attempt failed or
        the patient is no longer :attr:`alive` (erased: their annotations must not come back,
        e.g. an "acknowledged" or "resolved" still queued)."""
        for attempt in range(1, self.attempts + 1):
            if not self.alive(action.patient_id):
                logger.info(
                    "annotation %s of alert %s not written: its patient was erased",
                    action.kind,
                    action.alert_id,
                )
                return None
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
            if not self.alive(action.patient_id):
                await self._undo(action, annotation_id)
                return None
            if action.kind == "opened":
                self.remember(action, annotation_id)
            logger.info(
                "annotation %s of alert %s: id %d", action.kind, action.alert_id, annotation_id
            )
            return annotation_id
        return None

    async def _undo(self, action: Annotate, annotation_id: int) -> None:
        """Delete an annotation written while its patient was being erased (the erasure's
        search may have run before it existed)."""
        try:
            await asyncio.to_thread(self.annotator.delete, annotation_id)
        except Exception as exc:
            logger.error(
                "annotation %d of alert %s, written during its patient's erasure, not deleted"
                " (%s): asking for the erasure again finds it",
                annotation_id,
                action.alert_id,
                type(exc).__name__,
            )
            return
        logger.info(
            "annotation %d of alert %s deleted: its patient was erased while it was written",
            annotation_id,
            action.alert_id,
        )

    async def run(self) -> None:
        """Consume the queue forever (cancel to stop)."""
        while True:
            action = await self.queue.get()
            try:
                await self.write(action)
            finally:
                self.queue.task_done()
