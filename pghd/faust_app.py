"""One way to make a pghd Faust worker's app: the settings every worker shares, the race fix.

Both workers (processors, alerts) read raw bytes keyed by patient id, wait for acks from
every in-sync replica and start a new consumer group at the earliest offset; they differ only
in their own options (passed through ``extra``, e.g. the processors' commit interval). Their
Kafka clients authenticate as :mod:`pghd.kafka_security` says (``broker_credentials``).
:func:`new_app` also applies :mod:`pghd.faust_fixes` (faust-streaming #596) before the app
exists, so no worker runs without it.
"""

from __future__ import annotations

from typing import Any, Protocol

import faust

from pghd import faust_fixes, kafka_security

__all__ = ["WorkerSettings", "brokers", "new_app"]


class WorkerSettings(Protocol):
    """The fields of a worker's settings :func:`new_app` reads."""

    @property
    def app_id(self) -> str: ...
    @property
    def kafka_bootstrap(self) -> str: ...
    @property
    def store(self) -> str: ...
    @property
    def data_dir(self) -> str: ...
    @property
    def topic_partitions(self) -> int: ...
    @property
    def replication_factor(self) -> int: ...
    @property
    def session_timeout_s(self) -> float: ...
    @property
    def heartbeat_interval_s(self) -> float: ...
    @property
    def web_port(self) -> int: ...
    @property
    def web_host(self) -> str: ...


def brokers(bootstrap: str) -> list[str]:
    """Faust's broker URLs for a comma-separated ``host:port`` list."""
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


def new_app(settings: WorkerSettings, **extra: Any) -> faust.App:
    """A Faust app for ``settings`` with the options every pghd worker shares (``extra``
    adds or overrides options)."""
    faust_fixes.apply()  # faust-streaming #596: seek after recovery; pghd/faust_fixes.py
    options: dict[str, Any] = {
        "broker": brokers(settings.kafka_bootstrap),
        "store": settings.store,
        "datadir": settings.data_dir,
        "topic_partitions": settings.topic_partitions,
        "topic_replication_factor": settings.replication_factor,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": settings.heartbeat_interval_s,
        "web_port": settings.web_port,
        "web_host": settings.web_host,
        "web_bind": settings.web_host,
        **kafka_security.faust_options(),
    }
    options.update(extra)
    return faust.App(settings.app_id, **options)
