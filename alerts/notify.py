"""Notifications: what they say (pure) and their delivery through Apprise.

:func:`send_notification` sends one alert notification to one channel URL, once (the
alerts worker retries and records every attempt); for webhook channels that can
deduplicate (:func:`can_deduplicate`: ``json``, ``form``, ``xml``) the deterministic
notification id travels in the body (``notification_id``) and in the
``X-Pghd-Notification-Id`` header (:func:`with_notification_id`).

The first cut's per-anomaly helpers remain below:

:func:`format_notification` turns an :class:`~pghd.contracts.Anomaly` into a title, body and
Apprise notify type. :class:`Notifier` delivers one to every configured channel (one Apprise
object per URL, so a retry goes only to the channels that failed), retrying with
exponential backoff. :class:`RecentIds` is the bounded memory that keeps a replayed anomaly
from being notified twice in one run. Logs name anomalies and channels by id and number,
never by value or URL (URLs may hold tokens).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import apprise

from pghd.contracts import Anomaly, Severity

__all__ = [
    "DEDUP_SCHEMES",
    "NOTIFICATION_ID_HEADER",
    "NOTIFY_TYPES",
    "DeliveryReport",
    "Notification",
    "Notifier",
    "RecentIds",
    "can_deduplicate",
    "format_notification",
    "send_notification",
    "with_notification_id",
]

logger = logging.getLogger(__name__)

NOTIFY_TYPES: dict[Severity, apprise.NotifyType] = {
    Severity.CRITICAL: apprise.NotifyType.FAILURE,
    Severity.WARNING: apprise.NotifyType.WARNING,
    Severity.INFO: apprise.NotifyType.INFO,
}


@dataclass(frozen=True, slots=True)
class Notification:
    """What a care team receives about one anomaly."""

    anomaly_id: str
    patient_id: str
    title: str
    body: str
    notify_type: apprise.NotifyType


def format_notification(anomaly: Anomaly) -> Notification:
    """Title ``[critical] patient p1 heart_rate``; body = explanation, time and anomaly id."""
    observed = anomaly.observed_at.strftime("%Y-%m-%d %H:%M:%SZ")
    body = "\n".join(
        [
            anomaly.explanation,
            f"observed {observed} · detector {anomaly.detector}",
            f"anomaly_id: {anomaly.anomaly_id}",
        ]
    )
    return Notification(
        anomaly_id=anomaly.anomaly_id,
        patient_id=anomaly.patient_id,
        title=f"[{anomaly.severity.value}] patient {anomaly.patient_id} {anomaly.channel}",
        body=body,
        notify_type=NOTIFY_TYPES[anomaly.severity],
    )


class RecentIds:
    """The last ``maxsize`` ids seen, least recently seen forgotten first."""

    def __init__(self, maxsize: int = 10_000) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, item: object) -> bool:
        return item in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, item: str) -> bool:
        """Remember ``item``; ``True`` if it was not remembered already."""
        if item in self._ids:
            self._ids.move_to_end(item)
            return False
        self._ids[item] = None
        if len(self._ids) > self.maxsize:
            self._ids.popitem(last=False)
        return True


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """Which channels (by number) got the notification and which did not."""

    delivered: tuple[int, ...]
    failed: tuple[int, ...]

    @property
    def ok(self) -> bool:
        return not self.failed


def _scheme(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "?"


class Notifier:
    """Delivers notifications to a fixed list of Apprise URLs, retrying failed channels."""

    def __init__(self, urls: Sequence[str], *, attempts: int = 3, backoff_s: float = 1.0) -> None:
        """Raises ``ValueError`` naming the channel number of a URL Apprise does not accept."""
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.channels: list[tuple[str, apprise.Apprise]] = []
        for number, url in enumerate(urls):
            channel = apprise.Apprise()
            if not channel.add(url):
                raise ValueError(
                    f"notify URL #{number} ({_scheme(url)}://...) is not a valid Apprise URL"
                )
            self.channels.append((_scheme(url), channel))

    async def _send_once(self, number: int, notification: Notification) -> bool:
        scheme, channel = self.channels[number]
        try:
            result = await channel.async_notify(
                title=notification.title,
                body=notification.body,
                notify_type=notification.notify_type,
            )
        except Exception:
            logger.exception(
                "anomaly %s: channel #%d (%s) raised", notification.anomaly_id, number, scheme
            )
            return False
        return bool(result)

    async def deliver(self, notification: Notification) -> DeliveryReport:
        """Send to every channel; retry the failed ones ``attempts - 1`` more times."""
        pending = list(range(len(self.channels)))
        delivered: list[int] = []
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 2))
            results = await asyncio.gather(*(self._send_once(n, notification) for n in pending))
            delivered += [n for n, ok in zip(pending, results, strict=True) if ok]
            pending = [n for n, ok in zip(pending, results, strict=True) if not ok]
            if not pending:
                break
            logger.warning(
                "anomaly %s patient %s: channels %s failed (attempt %d of %d)",
                notification.anomaly_id,
                notification.patient_id,
                ",".join(f"#{n} ({self.channels[n][0]})" for n in pending),
                attempt,
                self.attempts,
            )
        return DeliveryReport(delivered=tuple(sorted(delivered)), failed=tuple(pending))


DEDUP_SCHEMES = frozenset({"json", "jsons", "form", "forms", "xml", "xmls"})
"""Apprise webhook schemes that carry the notification id, so receivers can deduplicate."""
NOTIFICATION_ID_HEADER = "X-Pghd-Notification-Id"


def can_deduplicate(url: str) -> bool:
    """True when the channel's receiver is told the notification id (webhooks)."""
    return _scheme(url).lower() in DEDUP_SCHEMES


def with_notification_id(url: str, notification_id: str) -> str:
    """The URL with Apprise's payload extra ``:notification_id`` and header ``+X-...``."""
    if not can_deduplicate(url):
        return url
    separator = "&" if "?" in url else "?"
    return (
        f"{url}{separator}:notification_id={notification_id}"
        f"&+{NOTIFICATION_ID_HEADER}={notification_id}"
    )


async def send_notification(
    url: str, *, title: str, body: str, severity: Severity, notification_id: str
) -> bool:
    """One try to one channel; False when Apprise refuses the URL or the send fails."""
    channel = apprise.Apprise()
    if not channel.add(with_notification_id(url, notification_id)):
        logger.error(
            "notification %s: channel URL (%s://...) is invalid", notification_id, _scheme(url)
        )
        return False
    try:
        result = await channel.async_notify(
            title=title, body=body, notify_type=NOTIFY_TYPES[severity]
        )
    except Exception:
        logger.exception("notification %s: channel (%s) raised", notification_id, _scheme(url))
        return False
    return bool(result)
