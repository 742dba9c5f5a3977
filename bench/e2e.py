"""The processors' drain rate and end-to-end latency under load, alone (``make bench`` runs
both among its other figures).

``python -m bench.e2e --rate 5000 --seconds 120`` starts its own Kafka and InfluxDB, drains
a backlog of 120,000 heart rates in 12-reading records through one processors worker
against the bare consume + judge + InfluxDB loop, then runs the open-loop generator at
``--rate`` readings/s for ``--seconds`` and prints POST → anomaly p50/p99, late posts and
the worker's lag every 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import uuid
from pathlib import Path

from bench.baselines import consume_and_judge, produce
from bench.runs import OffsetWatch, end_offsets_sum, open_loop_latencies
from bench.workloads import encoded_measurements
from deploy.local.ephemeral import ephemeral_stack
from deploy.local.harness import running_pipeline
from pghd import topics
from processors.baseline import BaselineParams
from processors.judge import JudgeParams
from processors.store.influx import InfluxLines

WARMUP = 10


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__)
    parser.add_argument("--rate", type=int, default=5_000, help="readings/s offered")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--patients", type=int, default=2_000)
    args = parser.parse_args()
    params = JudgeParams(baseline=BaselineParams(warmup=WARMUP))
    with (
        tempfile.TemporaryDirectory(prefix="pghd-e2e-") as tmp,
        ephemeral_stack(Path(tmp)) as stack,
    ):
        bootstrap = stack.kafka.bootstrap
        backlog = encoded_measurements(patients=400, per_patient=300, seed=2, per_request=12)
        asyncio.run(produce(bootstrap, topics.MEASUREMENTS, backlog))
        readings = 400 * 300
        records = end_offsets_sum(bootstrap, topics.MEASUREMENTS)
        influx = InfluxLines(
            url=stack.influx.url,
            token=stack.influx.token,
            org=stack.influx.org,
            bucket=stack.influx.bucket,
            timeout_s=30,
        )
        bare = asyncio.run(
            consume_and_judge(
                bootstrap, topics.MEASUREMENTS, count=readings, params=params, influx=influx
            )
        )
        asyncio.run(influx.close())
        suffix = uuid.uuid4().hex[:8]
        group = f"pghd-processors-{suffix}"
        with OffsetWatch(bootstrap, group, topics.MEASUREMENTS) as watch, \
                OffsetWatch(bootstrap, f"{group}-store", topics.POINTS) as store, \
                running_pipeline(
                    stack_env=stack.env(), influx=stack.influx, workdir=Path(tmp) / "b",
                    app_suffix=suffix, warmup=WARMUP, probe_timeout=600,
                ) as pipeline:  # fmt: skip
            watch.wait_for(records, timeout=600)
            store.wait_for(end_offsets_sum(bootstrap, topics.POINTS), timeout=600)
            ours = readings / (store.samples[-1][0] - watch.first_moving())
            print(f"processors drain: {ours:,.0f} readings/s, bare {bare:,.0f}/s,"
                  f" ratio {ours / bare:.2f}", flush=True)  # fmt: skip
            loop = asyncio.run(
                open_loop_latencies(
                    pipeline,
                    rate=args.rate,
                    seconds=args.seconds,
                    per_request=24,
                    patients=args.patients,
                    group=group,
                    warmup=WARMUP,
                )
            )
        latencies = sorted(loop.latencies)
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        print(
            f"POST -> anomaly at {loop.offered_per_s:,.0f} readings/s offered:"
            f" p50 {p50:,.0f} ms, p99 {p99:,.0f} ms; {loop.late_posts} posts late;"
            f" lag (records) every 5 s: {[n for _, n in loop.lag]}"
        )


if __name__ == "__main__":
    main()
