"""The subscriptions an alerts worker sends feedback by: ``pghd.feedback-subscriptions.v1``
followed into memory, every partition (a patient's events are sent by whichever worker owns
their partition of the events topic, so each worker holds every subscription).

Pure: records in (:meth:`SubscriptionBook.apply_record`, fed by
:class:`pghd.service.follower.CompactedFollower`), lookups out. ``ready`` is set by the
follower once it has read the topic to the end it saw at start: until then the worker does
not decide whether an event is wanted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pghd.feedback.subscription import FeedbackSubscription, read_record

__all__ = ["SubscriptionBook"]


@dataclass
class SubscriptionBook:
    """The latest subscription of every patient who has one."""

    subscriptions: dict[str, FeedbackSubscription] = field(default_factory=dict)
    ready: bool = False

    def __len__(self) -> int:
        return len(self.subscriptions)

    def apply_record(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the topic (a tombstone forgets); ``ValueError`` on a bad one."""
        patient_id, found = read_record(key, value)
        if found is None:
            self.subscriptions.pop(patient_id, None)
        else:
            self.subscriptions[patient_id] = found

    def get(self, patient_id: str) -> FeedbackSubscription | None:
        return self.subscriptions.get(patient_id)

    def forget(self, patient_id: str) -> bool:
        """Drop ``patient_id``'s subscription (an erasure); whether there was one."""
        return self.subscriptions.pop(patient_id, None) is not None
