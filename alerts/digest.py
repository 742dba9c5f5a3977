"""The daily digest, pure: when it is due, and what each care team's digest says.

Findings below critical that arrive when a patient is over the notification budget are not
paged (:mod:`alerts.routing` records them with the ``digest`` outcome); once a day, at the
:class:`~pghd.alerting.DigestPolicy` time, each care team receives one message listing the
findings held back in the last 24 hours. Sending, and remembering what was sent, is
:mod:`alerts.digest_sender`'s job.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from pghd.alerting import Alert, DigestPolicy, NotificationOutcome, RoutingConfig

__all__ = ["UNASSIGNED", "WINDOW", "digest", "digest_id", "due_day", "team_digests"]

WINDOW = timedelta(hours=24)
TITLE = "pghd daily digest"
UNASSIGNED = "unassigned"
"""The team name of patients with no care team (no mapping and no default team)."""


def due_day(policy: DigestPolicy, *, now: datetime) -> date:
    """The local day whose digest is due at ``now``; before ``at`` that is yesterday's."""
    local = now.astimezone(ZoneInfo(policy.timezone))
    if local.time().replace(tzinfo=None) >= policy.at:
        return local.date()
    return local.date() - timedelta(days=1)


def digest_id(team: str, day: date) -> str:
    """The notification id of a team's digest of a day (receivers deduplicate on it)."""
    return "dg-" + hashlib.sha256(f"{team}|{day.isoformat()}".encode()).hexdigest()[:24]


def _held_back(alert: Alert, *, since: datetime, until: datetime) -> bool:
    return any(
        r.outcome is NotificationOutcome.DIGEST and since <= r.at < until
        for r in alert.notifications
    )


def digest(alerts: Iterable[Alert], *, since: datetime, until: datetime, title: str) -> str:
    """One digest: the alerts with findings held back in ``[since, until)``, one line each."""
    entries = sorted(
        (a for a in alerts if _held_back(a, since=since, until=until)),
        key=lambda a: (a.patient_id, a.problem, a.opened_at),
    )
    patients = len({a.patient_id for a in entries})
    lines = [f"{title}: {len(entries)} findings, {patients} patients"]
    for a in entries:
        lines.append(
            f"- patient {a.patient_id} {a.problem} [{a.severity.value}] {a.status.value}:"
            f" {a.anomaly_count} anomalies from {a.opened_at.strftime('%Y-%m-%d %H:%MZ')}"
            f" · {a.summary} (alert_id: {a.alert_id})"
        )
    if not entries:
        lines.append("no findings below critical were held back")
    return "\n".join(lines)


def team_digests(
    alerts: Iterable[Alert], *, config: RoutingConfig, day: date, until: datetime
) -> dict[str, tuple[int, str]]:
    """Each team's (findings, text) for ``day``'s digest, covering the 24 h before ``until``.

    Every team the config knows gets a digest (an empty one says nothing was held back, so
    a team can tell a quiet day from a broken digest); teams with findings but no mapping
    appear under :data:`UNASSIGNED`.
    """
    by_team: dict[str, list[Alert]] = defaultdict(list)
    for team in {*config.patient_teams.values(), config.default_team}:
        if team is not None:
            by_team[team] = []
    since = until - WINDOW
    for alert in alerts:
        if _held_back(alert, since=since, until=until):
            by_team[config.team_of(alert.patient_id) or UNASSIGNED].append(alert)
    return {
        team: (
            len(team_alerts),
            digest(
                team_alerts, since=since, until=until, title=f"pghd daily digest {day} for {team}"
            ),
        )
        for team, team_alerts in sorted(by_team.items())
    }
