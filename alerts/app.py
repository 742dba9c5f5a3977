"""The alerts Faust app: :func:`build_app` and the app ``faust -A alerts.app`` runs.

Start a worker with ``python -m alerts.main`` (or ``faust -A alerts.app worker``). What a
worker does with anomalies and care-team commands, and its timers, is
:mod:`alerts.agents`; the pure lifecycle is :mod:`alerts.state`; notifications are
:mod:`alerts.delivery` and :mod:`alerts.outbox`.
"""

from __future__ import annotations

from typing import Any

import faust

from alerts.agents import Alerts
from alerts.settings import AlertsSettings
from pghd.faust_app import new_app

__all__ = ["build_app"]  # and, built on first use: app, alerts, settings


def build_app(settings: AlertsSettings) -> tuple[faust.App, Alerts]:
    """An alerts Faust app for ``settings``, with its topics, table, agent and timers."""
    app = new_app(settings)
    return app, Alerts(app, settings)


_built: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    """``app``, ``alerts`` and ``settings`` of this process (from the environment), built
    on first use, so importing :func:`build_app` needs no environment."""
    if name not in ("app", "alerts", "settings"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if not _built:
        settings = AlertsSettings()
        _built["settings"] = settings
        _built["app"], _built["alerts"] = build_app(settings)
    return _built[name]
