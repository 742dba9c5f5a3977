"""The store stage as a service of the processors worker, or as a process of its own.

:func:`build_stage` makes a :class:`~processors.store.stage.StoreStage` from the processors
settings; :func:`store_service` wraps it in a ``mode.Service`` that a Faust app starts after
its tables recovered and stops before it exits (``app.service(...)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import mode

from processors.settings import ProcessorSettings
from processors.store.erase import InfluxEraser, buckets_to_erase
from processors.store.influx import InfluxLines
from processors.store.stage import StoreCounters, StoreStage

__all__ = ["build_stage", "store_service"]

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 30.0


def build_stage(
    settings: ProcessorSettings, *, counters: StoreCounters
) -> tuple[StoreStage, InfluxLines]:
    """The store stage these settings describe, and the InfluxDB writer it uses."""
    influx = InfluxLines(
        url=settings.influx_url,
        token=settings.influx_token.get_secret_value(),
        org=settings.influx_org,
        bucket=settings.influx_bucket,
        timeout_s=settings.influx_timeout_s,
    )
    eraser = InfluxEraser(
        url=settings.influx_url,
        token=settings.influx_token.get_secret_value(),
        org=settings.influx_org,
        buckets=buckets_to_erase(settings.influx_bucket, settings.influx_erase_buckets),
        timeout_s=settings.influx_timeout_s,
    )
    stage = StoreStage(
        bootstrap=settings.kafka_bootstrap,
        group=settings.store_group_id,
        write=influx.write,
        erase=eraser.erase,
        counters=counters,
        max_records=settings.store_max_records,
        max_backoff_s=settings.influx_max_backoff_s,
        client_id=f"{settings.app_id}-store",
    )
    return stage, influx


def store_service(settings: ProcessorSettings, *, counters: StoreCounters) -> type[mode.Service]:
    """A ``mode.Service`` class running the store stage (for ``faust.App.service``)."""

    class StoreService(mode.Service):
        """Runs the store stage in the background while the worker runs."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.stage, self.influx = build_stage(settings, counters=counters)
            self.runner: asyncio.Task[None] | None = None

        async def on_start(self) -> None:
            self.runner = asyncio.ensure_future(self._run())

        async def _run(self) -> None:
            try:
                await self.stage.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("store stage failed; the worker goes on judging")

        async def on_stop(self) -> None:
            self.stage.stop()
            if self.runner is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self.runner), STOP_TIMEOUT_S)
                except TimeoutError:
                    self.runner.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await self.runner
            await self.influx.close()

    return StoreService
