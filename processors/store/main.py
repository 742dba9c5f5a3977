"""``python -m processors.store.main``: run the store stage alone, until SIGTERM or SIGINT.

For deployments that scale storage apart from judging: set
``PGHD_PROCESSORS_STORE_IN_WORKER=false`` on the processors workers and run this instead (any
number of instances: they share the ``store_group`` consumer group and its partitions).
Reads the same ``PGHD_PROCESSORS_*`` / ``PGHD_INFLUX_*`` settings as the workers. On a
signal it finishes the batch in hand, commits and exits with status 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from processors.metrics import ProcessorMetrics
from processors.settings import ProcessorSettings
from processors.store.service import build_stage

__all__ = ["main"]

logger = logging.getLogger(__name__)


async def _run(settings: ProcessorSettings) -> None:
    stage, influx = build_stage(settings, counters=ProcessorMetrics())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stage.stop)
    try:
        await stage.run()
    finally:
        await influx.close()


def main() -> None:
    """Run the store stage with the settings from the environment."""
    settings = ProcessorSettings()  # type: ignore[call-arg]  # influx_token comes from env
    logging.basicConfig(level=settings.log_level.upper())
    asyncio.run(_run(settings))


if __name__ == "__main__":
    main()
