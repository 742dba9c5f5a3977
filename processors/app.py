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

import faust

from pghd.faust_fixes import apply as apply_faust_fixes
from processors.agents import Processors
from processors.settings import ProcessorSettings

__all__ = ["app", "build_app", "processors", "settings"]


def build_app(settings: ProcessorSettings) -> tuple[faust.App, Processors]:
    """A processors Faust app for ``settings``, with its topics, tables, agents and timers."""
    apply_faust_fixes()  # faust-streaming #596: seek after recovery; pghd/faust_fixes.py
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
        store=settings.store,
        datadir=settings.data_dir,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_interval=settings.commit_interval_s,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        stream_wait_empty=True,
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_bind=settings.web_host,
    )
    return app, Processors(app, settings)


settings = ProcessorSettings()  # type: ignore[call-arg]  # influx_token comes from env
app, processors = build_app(settings)
