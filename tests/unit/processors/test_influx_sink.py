"""The InfluxDB sink without a server: point conversion and retry until accepted."""

from __future__ import annotations

from datetime import UTC, datetime

from processors.influx_sink import InfluxSink, to_point
from processors.judge import InfluxPoint

POINT = InfluxPoint(
    measurement="vitals",
    tags={"patient_id": "p-1", "channel": "heart_rate"},
    fields={"value": 72.0, "n": 3, "explanation": "ok"},
    time=datetime(2026, 1, 1, tzinfo=UTC),
)


def test_to_point_line_protocol() -> None:
    assert to_point(POINT).to_line_protocol() == (
        'vitals,channel=heart_rate,patient_id=p-1 explanation="ok",n=3i,value=72'
        " 1767225600000000000"
    )


class FlakySink(InfluxSink):
    def __init__(self, failures: int) -> None:
        super().__init__(url="http://127.0.0.1:1", token="t", org="-", bucket="b")
        self.failures = failures
        self.calls = 0

    async def write_once(self, points) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("down")


async def test_write_retries_until_accepted() -> None:
    sink = FlakySink(failures=3)
    delays: list[float] = []
    attempts = await sink.write([POINT], sleep=delays.append)
    assert attempts == 4 and sink.calls == 4
    assert len(delays) == 3 and delays == sorted(delays)


async def test_nothing_to_write_makes_no_request() -> None:
    sink = FlakySink(failures=0)
    assert await sink.write([]) == 0 and sink.calls == 0
