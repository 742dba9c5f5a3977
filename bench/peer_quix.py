"""The peer a user might pick instead: a Quix Streams app judging the same backlog.

Run by ``make bench`` in its own virtualenv (``.local/quix-venv``: Quix Streams 3.28.1 pins
an older pydantic than pghd): ``python -m bench.peer_quix --bootstrap ... --topic ...
--count N`` prints one JSON line, ``{"per_s": readings per second, "readings": N}``.

The app is what a user of Quix would write for this job: a StreamingDataFrame over the
measurements topic (either record shape, :mod:`pghd.envelope`), one stateful ``apply`` per
record that loads the patient's record from Quix's RocksDB ``State``, judges the record's
readings with pghd's own pure :func:`processors.judging.judge`, and stores the record
back (at-least-once, Quix's default). It writes nothing to InfluxDB, keeps no dedup and
sends no dead letters or anomalies: strictly less than a pghd worker does.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from pghd.envelope import decode_readings
from processors.baseline import BaselineParams
from processors.detectors.pipeline import JudgeParams
from processors.judging import judge
from processors.state import PatientRecord, decode_record, encode_record

__all__ = ["main"]


def main() -> None:
    from quixstreams import Application, State  # the peer's own virtualenv

    parser = argparse.ArgumentParser(prog="python -m bench.peer_quix")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True, help="readings to judge")
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    params = JudgeParams(baseline=BaselineParams(warmup=args.warmup))
    marks: list[float] = []
    judged = [0]

    with tempfile.TemporaryDirectory(prefix="pghd-quix-") as state_dir:
        app = Application(
            broker_address=args.bootstrap,
            consumer_group=f"pghd-bench-quix-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            state_dir=state_dir,
            loglevel="WARNING",
        )
        topic = app.topic(args.topic, key_deserializer="bytes", value_deserializer="bytes")
        frame = app.dataframe(topic)

        def judge_record(value: bytes, state: State) -> None:
            if not marks:
                marks.append(time.perf_counter())
            readings = decode_readings(value)
            pid = readings[0].patient_id
            raw: Any = state.get("record")
            record = PatientRecord() if raw is None else decode_record(raw)
            result = judge(
                record.baselines,
                readings,
                params=params,
                now=datetime.now(UTC),
                patients={pid: record.patient},
                news2_states={} if record.news2 is None else {pid: record.news2},
            )
            record.baselines.update(result.states)
            record.news2 = result.news2.get(pid, record.news2)
            state.set("record", orjson.loads(encode_record(record, partition=0)))
            judged[0] += len(readings)
            if judged[0] >= args.count and len(marks) == 1:
                marks.append(time.perf_counter())
                app.stop()

        frame.update(judge_record, stateful=True)
        app.run()
    print(json.dumps({"per_s": judged[0] / (marks[1] - marks[0]), "readings": judged[0]}))


if __name__ == "__main__":
    main()
