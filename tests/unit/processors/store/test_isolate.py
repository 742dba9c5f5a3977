"""The store stage's isolating write: refused lines set aside, the rest stored."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from processors.store.isolate import write_isolating
from processors.store.outcome import Outcome, classify, describe


class HttpError(Exception):
    """Shaped like influxdb-client's ApiException: ``status`` and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class FakeInflux:
    """Stores lines; refuses a request holding a poison line the way InfluxDB 1.8 does
    (``400 partial write``: the other lines of that request are stored anyway)."""

    def __init__(self, poison: set[str], *, down: int = 0) -> None:
        self.poison = poison
        self.down = down
        self.stored: set[str] = set()
        self.requests = 0

    async def write(self, lines: Sequence[str]) -> None:
        self.requests += 1
        if self.down:
            self.down -= 1
            raise ConnectionRefusedError("connection refused")
        bad = [line for line in lines if line in self.poison]
        self.stored.update(line for line in lines if line not in self.poison)
        if bad:
            raise HttpError(
                400, f"partial write: points beyond retention policy dropped={len(bad)}"
            )


LINES = [f"vitals,patient_id=p-{i} value={i} {1_700_000_000_000_000_000 + i}" for i in range(64)]


async def test_one_poison_line_is_refused_alone_and_every_other_line_is_stored() -> None:
    influx = FakeInflux({LINES[37]})
    refused = await write_isolating(LINES, write=influx.write, chunk=64)
    assert [(r.index, r.line) for r in refused] == [(37, LINES[37])]
    assert "HTTP 400: partial write: points beyond retention policy" in refused[0].reason
    assert influx.stored == set(LINES) - {LINES[37]}
    assert influx.requests <= 2 * 6 + 1  # about 2 * log2(64) extra requests


async def test_lines_are_sent_in_chunks_and_a_clean_batch_takes_one_request_per_chunk() -> None:
    influx = FakeInflux(set())
    assert await write_isolating(LINES, write=influx.write, chunk=20) == []
    assert influx.requests == 4 and influx.stored == set(LINES)


async def test_several_poison_lines_in_different_chunks_are_each_named() -> None:
    influx = FakeInflux({LINES[0], LINES[63], LINES[20]})
    refused = await write_isolating(LINES, write=influx.write, chunk=16)
    assert [r.index for r in refused] == [0, 20, 63]
    assert influx.stored == set(LINES) - {LINES[0], LINES[20], LINES[63]}


async def test_a_transient_failure_is_raised_for_the_caller_to_retry() -> None:
    influx = FakeInflux({LINES[3]}, down=1)
    with pytest.raises(ConnectionRefusedError):
        await write_isolating(LINES, write=influx.write)
    assert influx.stored == set()


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (HttpError(400, "partial write: field type conflict"), Outcome.REFUSED),
        (HttpError(422, "points beyond retention policy"), Outcome.REFUSED),
        (HttpError(413, "request too large"), Outcome.REFUSED),
        (HttpError(429, "too many requests"), Outcome.TRANSIENT),
        (HttpError(500, "engine: cache-max-memory-size exceeded"), Outcome.TRANSIENT),
        (HttpError(503, "service unavailable"), Outcome.TRANSIENT),
        (HttpError(401, "authorization failed"), Outcome.CONFIGURATION),
        (HttpError(404, "database not found: pghd"), Outcome.CONFIGURATION),
        (TimeoutError(), Outcome.TRANSIENT),
        (ConnectionResetError("reset by peer"), Outcome.TRANSIENT),
    ],
)
def test_failures_are_classified(error: Exception, outcome: Outcome) -> None:
    assert classify(error) is outcome


def test_a_failure_is_described_in_one_line() -> None:
    assert (
        describe(HttpError(400, "unable to parse\n'x y z'")) == "HTTP 400: unable to parse 'x y z'"
    )
    assert describe(TimeoutError()) == "TimeoutError: TimeoutError"
    body = '{"error":"partial write: points beyond retention policy dropped=1"}'
    assert describe(HttpError(400, body)) == (
        "HTTP 400: partial write: points beyond retention policy dropped=1"
    )
