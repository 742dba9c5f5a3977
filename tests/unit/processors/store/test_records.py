"""Records of pghd.points.v1: one per patient per batch, line protocol InfluxDB parses."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from processors.points import InfluxPoint
from processors.store.records import decode_record, encode_records, to_line
from processors.store.stage import StoreStage, backoff_s

AT = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)


def _vital(patient: str, value: float, device: str = "watch 1") -> InfluxPoint:
    tags = {"patient_id": patient, "metric": "heart_rate", "device": device}
    return InfluxPoint("vitals", tags, {"value": value, "event_id": "e,1 x"}, AT)


def test_points_travel_as_one_record_per_patient_in_first_seen_order() -> None:
    messages = encode_records([_vital("p-2", 60), _vital("p-1", 61), _vital("p-2", 62)])
    assert [key for key, _ in messages] == [b"p-2", b"p-1"]
    record = decode_record(messages[0][1])
    assert record.patient_id == "p-2" and len(record.lines) == 2


def test_lines_escape_tags_and_strings_and_carry_nanoseconds() -> None:
    line = to_line(_vital("p-1", 61.5))
    assert line == (
        'vitals,device=watch\\ 1,metric=heart_rate,patient_id=p-1 event_id="e,1 x",value=61.5 '
        + str(int(AT.timestamp()) * 10**9)
    )


@pytest.mark.parametrize(
    "value",
    [None, b"not json", orjson.dumps({"schema_version": 1, "lines": []}), b'{"lines": "x"}'],
)
def test_a_message_that_is_not_a_points_record_is_refused(value: bytes | None) -> None:
    with pytest.raises(ValueError):
        decode_record(value)


def test_backoff_doubles_up_to_its_cap() -> None:
    delays = [backoff_s(n, base_s=0.2, cap_s=30.0, jitter=1.0) for n in range(1, 12)]
    assert delays[:4] == [0.2, 0.4, 0.8, 1.6]
    assert max(delays) == 30.0 and delays[-1] == 30.0
    assert backoff_s(1000, base_s=0.2, cap_s=30.0, jitter=1.2) == pytest.approx(36.0)


class _Counters:
    def store_written(self, *, lines: int, seconds: float) -> None: ...
    def store_failed(self, *, outcome: str) -> None: ...
    def store_refused(self, *, lines: int) -> None: ...
    def dead_lettered(self, letters: object) -> None: ...


async def test_the_stage_starts_its_clients_again_after_they_fail() -> None:
    """A failure of the Kafka clients (here raised by the session itself) never ends the
    stage: it backs off and starts a new session, until asked to stop."""

    class Flaky(StoreStage):
        sessions = 0

        async def _session(self) -> None:
            Flaky.sessions += 1
            if Flaky.sessions < 3:
                raise RuntimeError("broker gone")
            self.stop()

    async def write(lines: object) -> None: ...

    stage = Flaky(
        bootstrap="127.0.0.1:1", group="g", write=write, counters=_Counters(), base_backoff_s=0.001
    )
    await stage.run()
    assert Flaky.sessions == 3
