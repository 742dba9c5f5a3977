"""Notifications: what they say (pure) and their delivery through Apprise.

:func:`send_notification` sends one alert notification to one channel URL, once (the
alerts worker retries and records every attempt); for webhook channels that can
deduplicate (:func:`can_deduplicate`: ``json``, ``form``, ``xml``) the deterministic
notification id travels in the body (``notification_id``) and in the
``X-Pghd-Notification-Id`` header (:func:`with_notification_id`). E-mail (``mailto``,
``mailtos``) carries the header too, for mail rules and tracing, but does not count as
deduplicating: see :mod:`alerts.delivery` for what each channel kind can do.
Logs name alerts and channels by id, never by value or URL (URLs may hold tokens).
"""

from __future__ import annotations

import logging

import apprise

from pghd.contracts import Severity

__all__ = [
    "DEDUP_SCHEMES",
    "EMAIL_SCHEMES",
    "NOTIFICATION_ID_HEADER",
    "NOTIFY_TYPES",
    "can_deduplicate",
    "send_notification",
    "with_notification_id",
]

logger = logging.getLogger(__name__)

NOTIFY_TYPES: dict[Severity, apprise.NotifyType] = {
    Severity.CRITICAL: apprise.NotifyType.FAILURE,
    Severity.WARNING: apprise.NotifyType.WARNING,
    Severity.INFO: apprise.NotifyType.INFO,
}


def _scheme(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "?"


DEDUP_SCHEMES = frozenset({"json", "jsons", "form", "forms", "xml", "xmls"})
"""Apprise webhook schemes that carry the notification id, so receivers can deduplicate."""
EMAIL_SCHEMES = frozenset({"mailto", "mailtos"})
"""Apprise e-mail schemes: the id goes in a header, which mail clients do not dedup on."""
NOTIFICATION_ID_HEADER = "X-Pghd-Notification-Id"


def can_deduplicate(url: str) -> bool:
    """True when the channel's receiver is told the notification id (webhooks)."""
    return _scheme(url).lower() in DEDUP_SCHEMES


def with_notification_id(url: str, notification_id: str) -> str:
    """The URL with Apprise's payload extra ``:notification_id`` and header ``+X-...``
    (webhooks), or with the header only (e-mail); other channels unchanged."""
    scheme = _scheme(url).lower()
    separator = "&" if "?" in url else "?"
    header = f"+{NOTIFICATION_ID_HEADER}={notification_id}"
    if scheme in DEDUP_SCHEMES:
        return f"{url}{separator}:notification_id={notification_id}&{header}"
    if scheme in EMAIL_SCHEMES:
        return f"{url}{separator}{header}"
    return url


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
