"""``python -m tests.integration.restart_worker``: a processors worker for the restart tests.

``processors.main`` with debug logs of Faust's consumer and table recovery (mode's log handler
filters at the worker's log level, so run it with ``PGHD_PROCESSORS_LOG_LEVEL=debug``; the
noisy loggers are raised to INFO here), SIGUSR1 printing every asyncio task's stack, and three
switches read from the environment:

- ``PGHD_TEST_TRACE_FETCH=1``: log each batch of measurements the consumer fetches (partition,
  offsets, Faust's read and committed offset) and the offsets after each ``perform_seek``;
- ``PGHD_TEST_COMMITTED_LATENCY_S=<s>``: delay each ``AIOKafkaConsumer.committed()`` call, as
  a broker further away than loopback does (the seek after recovery asks for each partition's
  committed offset in turn); this widens the race of :mod:`pghd.faust_fixes`;
- ``PGHD_TEST_WITHOUT_FAUST_FIX=1``: do not apply :mod:`pghd.faust_fixes` (to measure
  the failure rate without it).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

__all__ = ["run"]

logger = logging.getLogger("faust.transport.consumer")

QUIET = ("aiokafka", "kafka", "faust", "mode", "processors", "urllib3", "httpx")
VERBOSE = ("faust.transport.consumer", "faust.tables.recovery", "pghd.faust_fixes")


def _measurement_offsets(offsets: dict[Any, int | None]) -> dict[int, int | None]:
    return {tp.partition: o for tp, o in offsets.items() if "measurements" in tp.topic}


def _trace_fetches() -> None:
    from faust.transport.consumer import Consumer
    from faust.transport.drivers import aiokafka as driver

    getmany = driver.Consumer._getmany

    seen_state: list[object] = [None]

    async def traced_getmany(self: Any, active_partitions: Any, timeout: float) -> Any:
        state = (
            sorted(tp.partition for tp in active_partitions or () if "measurements" in tp.topic),
            sorted(tp.partition for tp in self._buffered_partitions if "measurements" in tp.topic),
            sorted(tp.partition for tp in self._paused_partitions if "measurements" in tp.topic),
        )
        if state != seen_state[0]:
            seen_state[0] = state
            logger.info("TRACE active=%s buffered=%s paused=%s", *state)
        records = await getmany(self, active_partitions, timeout)
        for tp, batch in records.items():
            if batch and "measurements" in tp.topic:
                logger.info(
                    "TRACE fetched p%d %d..%d (%d) roff=%r comm=%r",
                    tp.partition,
                    batch[0].offset,
                    batch[-1].offset,
                    len(batch),
                    self._read_offset.get(tp),
                    self._committed_offset.get(tp),
                )
        return records

    async def traced_seek(self: Any) -> None:
        await Consumer.perform_seek(self)  # looked up now: processors.app patches it later
        logger.info(
            "TRACE perform_seek roff=%r comm=%r",
            _measurement_offsets(self._read_offset),
            _measurement_offsets(self._committed_offset),
        )

    driver.Consumer._getmany = traced_getmany  # type: ignore[method-assign]
    driver.Consumer.perform_seek = traced_seek  # type: ignore[method-assign]


def _delay_committed(seconds: float) -> None:
    import aiokafka

    committed = aiokafka.AIOKafkaConsumer.committed

    async def slow_committed(self: Any, partition: Any) -> Any:
        await asyncio.sleep(seconds)
        return await committed(self, partition)

    aiokafka.AIOKafkaConsumer.committed = slow_committed  # type: ignore[method-assign]


def _dump_tasks_on_sigusr1() -> None:
    """On SIGUSR1 print the stack of every asyncio task of the app and of every thread."""
    import faulthandler
    import signal
    import sys

    def dump(signum: int, frame: object) -> None:
        from processors.app import app

        faulthandler.dump_traceback(all_threads=True)
        for task in asyncio.all_tasks(app.loop):
            print(f"--- task {task.get_name()}", file=sys.stderr)
            task.print_stack(limit=12, file=sys.stderr)
        sys.stderr.flush()

    signal.signal(signal.SIGUSR1, dump)


def run() -> None:
    """Set up logging and the switches, then run ``processors.main``."""
    _dump_tasks_on_sigusr1()
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.INFO)
    for name in VERBOSE:
        logging.getLogger(name).setLevel(logging.DEBUG)
    if os.environ.get("PGHD_TEST_TRACE_FETCH"):
        _trace_fetches()
    if latency := float(os.environ.get("PGHD_TEST_COMMITTED_LATENCY_S", "0")):
        _delay_committed(latency)
    if os.environ.get("PGHD_TEST_WITHOUT_FAUST_FIX"):
        import pghd.faust_fixes

        pghd.faust_fixes.apply = lambda: None  # type: ignore[assignment]
    from processors.main import main

    main()


if __name__ == "__main__":
    run()
