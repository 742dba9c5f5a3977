"""The processors Faust app: :func:`build_app` and the app ``faust -A processors.app`` runs.

Start a worker with ``python -m processors.main`` (or ``faust -A processors.app worker``).
What a worker does with each batch of readings is :mod:`processors.agents`; each patient's
state is one record of the ``state`` table (:mod:`processors.state`,
:mod:`processors.state_store`); anomalies go out once (:mod:`processors.outbox`).

Why the batch path looks the way it does (measured on a 2-core machine, README
"Performance"): Faust's tables write one changelog message per key through a bounded
buffer that stops input while full, and committing every batch flushes the producer. So
the worker keeps Faust for what it does well (consumer group, rebalancing, table recovery
and standbys, web server, timers) and writes one state record per patient per batch
straight to the table's changelog, awaited once per batch; offsets commit on the interval
only, and a batch waits at most ``batch_within_s`` (20 ms) to fill.

Consumer group membership: a worker that dies without leaving the group (SIGKILL, a lost
host) keeps its partitions until ``session_timeout_s`` passes; set it low (it must stay at
least the broker's ``group.min.session.timeout.ms``, 6 s by default) where fast takeover
matters more than tolerance of long pauses.
"""

from __future__ import annotations

from typing import Any

import faust

from pghd.faust_app import new_app
from processors.agents import Processors
from processors.settings import ProcessorSettings

__all__ = ["build_app"]  # and, built on first use: app, processors, settings


def build_app(settings: ProcessorSettings) -> tuple[faust.App, Processors]:
    """A processors Faust app for ``settings``, with its topics, tables, agents and timers."""
    app = new_app(
        settings,
        broker_commit_interval=settings.commit_interval_s,
        stream_wait_empty=True,
    )
    return app, Processors(app, settings)


_built: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    """``app``, ``processors`` and ``settings`` of this process (from the environment), built
    on first use, so importing :func:`build_app` needs no environment."""
    if name not in ("app", "processors", "settings"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if not _built:
        settings = ProcessorSettings()  # type: ignore[call-arg]  # influx_token: from env
        _built["settings"] = settings
        _built["app"], _built["processors"] = build_app(settings)
    return _built[name]
