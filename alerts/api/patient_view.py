"""What the patients' own routes (``/v1/me``) need besides the read model: the reader of
their points in InfluxDB and the clock.

:func:`store_for` builds the reader from the settings (none without an InfluxDB token:
those routes then answer ``503``); the app keeps it on ``app.state.patient_view`` and closes
it at shutdown. ``app.state.clock`` (a callable giving an aware ``datetime``; tests pin it)
is the routes' "now".
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request

from alerts.api.deps import SettingsDep
from alerts.api.settings import CareApiSettings
from pghd.patient_view.influx import InfluxPatientView, PatientViewStore
from pghd.problems import ProblemError

__all__ = [
    "ClockDep",
    "PatientViewDep",
    "get_clock",
    "get_patient_view",
    "store_for",
    "view_unavailable",
]

Clock = Callable[[], datetime]


def store_for(settings: CareApiSettings) -> PatientViewStore | None:
    """The InfluxDB reader of the settings; None when no InfluxDB token is configured."""
    if settings.influx_token is None:
        return None
    return InfluxPatientView(
        url=settings.influx_url,
        token=settings.influx_token.get_secret_value(),
        org=settings.influx_org,
        bucket=settings.influx_bucket,
        timeout_s=settings.influx_timeout_s,
    )


def view_unavailable(settings: CareApiSettings, detail: str) -> ProblemError:
    """The 503 problem (with ``Retry-After``) for readings that cannot be read now."""
    return ProblemError(
        status=503,
        slug="readings-unavailable",
        detail=detail,
        headers={"Retry-After": str(settings.retry_after_s)},
    )


def get_patient_view(request: Request, settings: SettingsDep) -> PatientViewStore:
    """The reader of the patients' points; 503 when none is configured."""
    store: PatientViewStore | None = getattr(request.app.state, "patient_view", None)
    if store is None:
        raise view_unavailable(settings, "readings are not available here (no InfluxDB token)")
    return store


def _now() -> datetime:
    return datetime.now(UTC)


def get_clock(request: Request) -> Clock:
    """The app's clock (``app.state.clock``; the wall clock unless a test pinned it)."""
    clock: Clock = getattr(request.app.state, "clock", _now)
    return clock


PatientViewDep = Annotated[PatientViewStore, Depends(get_patient_view)]
ClockDep = Annotated[Clock, Depends(get_clock)]
