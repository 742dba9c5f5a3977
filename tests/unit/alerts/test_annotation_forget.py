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


def test_an_erasure_retries_each_annotation_delete_and_names_those_left() -> None:
    from types import SimpleNamespace

    from alerts.agents import Alerts

    calls: list[int] = []

    class Annotator:
        def delete(self, annotation_id: int) -> None:
            calls.append(annotation_id)
            if annotation_id == 2 and calls.count(2) < 2:
                raise OSError("Grafana away")  # once, then it answers
            if annotation_id == 3:
                raise OSError("Grafana refuses")  # always

    alerts = SimpleNamespace(
        annotation_queue=SimpleNamespace(annotator=Annotator()),
        settings=SimpleNamespace(grafana_backoff_s=0.0),
    )
    left = asyncio.run(Alerts._delete_annotations(alerts, [1, 2, 3]))  # type: ignore[arg-type]
    assert left == [3]
    assert calls == [1, 2, 3, 2, 3, 3]
