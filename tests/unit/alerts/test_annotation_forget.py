"""An erasure drops the patient's annotations still queued for Grafana, and only theirs."""

from __future__ import annotations

import asyncio
from typing import Any

from alerts.grafana import AnnotationQueue


class _Action:
    def __init__(self, patient_id: str, alert_id: str) -> None:
        self.patient_id = patient_id
        self.alert_id = alert_id
        self.kind = "opened"


def test_forget_drops_only_the_patients_queued_annotations_in_order() -> None:
    async def scenario() -> list[str]:
        queue = AnnotationQueue(
            annotator=Any,  # type: ignore[arg-type]
            lookup=lambda action: None,
            remember=lambda action, annotation_id: None,
        )
        for pid, alert in (("gone", "a1"), ("kept", "b1"), ("gone", "a2"), ("kept", "b2")):
            queue.submit(_Action(pid, alert))  # type: ignore[arg-type]
        assert queue.forget("gone") == 2
        left = []
        while not queue.queue.empty():
            left.append(queue.queue.get_nowait().alert_id)
        return left

    assert asyncio.run(scenario()) == ["b1", "b2"]
