"""``make bench``: throughput, latency and state size of pghd beside bare baselines, one run.

First, in process (no servers), on a mixed simulated cohort (:mod:`pghd.simulation`:
heart rate, steps, spot checks, sleep, episodes; canonicalized as ingest does, then
judged in time order):

a. detector throughput: readings/s through :func:`processors.judging.judge` in batches
   of 500, single-threaded, judging only (generation and canonicalization not timed),
   against the same loop doing only a running mean and variance (Welford) per channel of
   each reading in a dict of 3-float tuples;
b. memory per patient-channel of baseline state after judging the cohort: bytes as the
   Faust table stores it (the value's JSON; a channel keeps one entry per context bucket,
   all counted) and in process (``tracemalloc``, states rebuilt from those bytes), against
   a bare ``(n, mean, M2)`` tuple per patient-channel measured the same two ways.

Then it starts its own Kafka and InfluxDB on free loopback ports (nothing else is
touched) and measures:

1. ingest throughput: readings/s through ``POST /v1/measurements`` (batches of 500, 4
   concurrent clients) against a bare aiokafka producer (acks=all, idempotent, gzip, the
   same three headers) writing the records ingest wrote for those requests;
2. processors readings/s per worker: one Faust worker draining a backlog of records of 12
   readings each (an hourly phone sync; ``--per-request``), from the first commit until the
   store stage has written every point to InfluxDB (decode, dedup, state records, points,
   InfluxDB, commits), against a bare aiokafka consumer decoding and judging the same
   backlog with the same pure functions and writing the same points to InfluxDB in requests
   of 5,000 lines; also against the same loop without InfluxDB (judging alone), a Faust agent
   that does nothing (Faust's ceiling) and a Quix Streams 3.28 app judging with the same
   functions and state in Quix ``State`` (:mod:`bench.peer_quix`, its own virtualenv);
   restart: how much longer a worker takes to start on 100,000 patients' state than on none;
3. alerts: one alerts worker turning a backlog of anomalies into alerts against a bare
   consumer running the same pure transition (grouping, routing) and producing the changed
   alerts and states per batch; anomaly on the topic → webhook received;
4. end-to-end latency: POST of an extreme reading → its Anomaly on ``pghd.anomalies.v1``
   (p50, p99) while an open-loop generator offers 5,000 readings/s for 2 minutes (2,000
   patients posting 24 readings at a time; processors lag sampled every 5 s), and one at a
   time on an idle pipeline; both against a bare produce(acks=all) → consume round trip.
5. FHIR: readings/s through ``POST /v1/fhir`` in batch Bundles of 100 Observations
   against the same readings through ``POST /v1/measurements``, 100 per request, on the
   same ingest process (:mod:`bench.fhir`; alone: ``python -m bench.fhir``).
6. Apple Health: records/s and peak RSS parsing a generated 1,000,000-record export against
   a bare C ``iterparse`` of it, and readings/s parsed and posted like ``pghd import
   apple-health`` (:mod:`bench.apple_health`; alone: ``python -m bench.apple_health``).

Figures depend on the machine and its load; the ratios are what to compare between runs.
Options: ``python -m bench --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import tempfile
import uuid
from pathlib import Path

from kafka.admin import KafkaAdminClient, NewTopic

from bench.alerting import anomaly_records, bare_lifecycle_rate, notification_latencies
from bench.apple_health import apple_health_figures
from bench.baselines import INGEST_HEADERS, consume_and_judge, faust_ceiling, produce, round_trips
from bench.fhir import BUNDLE_SIZE, fhir_vs_measurements
from bench.peer import quix_peer_rate
from bench.pure import cohort_measurements, dedup_sizes, judge_rate, state_sizes, welford_rate
from bench.recovery import recovery_time
from bench.runs import (
    OffsetWatch,
    end_offsets_sum,
    ingest_rate,
    open_loop_latencies,
    post_to_anomaly_latencies,
)
from bench.workloads import encoded_measurements, enveloped_requests, posted_readings
from deploy.local.ephemeral import ephemeral_stack
from deploy.local.harness import running_pipeline
from pghd import topics
from processors.baseline import BaselineParams
from processors.judge import JudgeParams
from processors.settings import ProcessorSettings
from processors.store.influx import InfluxLines

BENCH_TOPIC = "pghd.bench.v1"
LATEST_JSON = Path(__file__).resolve().parents[1] / ".local" / "bench" / "latest.json"
SUMMARY_KEYS = (
    "ingest_ratio",
    "processors_ratio",
    "processors_per_s",
    "alerts_ratio",
    "e2e_p50_ms",
    "e2e_p99_ms",
    "e2e_offered_per_s",
    "peer_quix_per_s",
    "processors_vs_quix",
    "recovery_s_per_100k_patients",
)
"""The JSON's headline keys, in order; a key is written only when the run measured it."""
WARMUP = 10
DEDUP_WINDOW_S = float(ProcessorSettings.model_fields["dedup_window_s"].default)


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def _row(name: str, ours: float, base: float, base_name: str, unit: str) -> str:
    ratio = _ratio(ours, base)
    return f"{name:<44} {ours:>10,.1f} {unit:<11} {base:>10,.1f}  {ratio:>7.2f}x  ({base_name})"


def _ratio(ours: float, base: float) -> float:
    return ours / base if base else float("nan")


def write_summary(path: Path, summary: dict[str, float], rows: list[str]) -> None:
    """The run's headline figures (:data:`SUMMARY_KEYS` that were measured, as finite
    numbers) and its table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = {
        key: summary[key] for key in SUMMARY_KEYS if key in summary and math.isfinite(summary[key])
    }
    path.write_text(json.dumps({**ordered, "table": rows}, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--ingest-readings", type=int, default=30_000)
    parser.add_argument("--backlog", type=int, default=120_000, help="readings for processors")
    parser.add_argument(
        "--per-request", type=int, default=12, help="readings per record of the backlog"
    )
    parser.add_argument("--open-rate", type=int, default=5_000, help="readings/s offered")
    parser.add_argument("--open-seconds", type=float, default=120.0)
    parser.add_argument("--open-patients", type=int, default=2_000)
    parser.add_argument("--recovery-patients", type=int, default=100_000)
    parser.add_argument("--latency-samples", type=int, default=60)
    parser.add_argument(
        "--alert-anomalies",
        type=int,
        default=40_000,
        help="enough for many commits (every 2.8 s): a short drain measures the interval",
    )
    parser.add_argument("--cohort-patients", type=int, default=100, help="in-process figures")
    parser.add_argument("--cohort-days", type=float, default=3.0, help="in-process figures")
    parser.add_argument("--fhir-readings", type=int, default=20_000)
    parser.add_argument("--apple-health-records", type=int, default=1_000_000)
    parser.add_argument(
        "--apple-health-post",
        type=int,
        default=30_000,
        help="records of a recent export to import over POST (at most ~32,000: its history"
        " must fit ingest's 90-day raw retention)",
    )
    parser.add_argument(
        "--json", type=Path, default=LATEST_JSON, help="where the figures are written as JSON"
    )
    args = parser.parse_args()
    rows: list[str] = []
    summary: dict[str, float] = {}
    params = JudgeParams(baseline=BaselineParams(warmup=WARMUP))

    print(
        f"==> in process: judging a simulated cohort of {args.cohort_patients} patients"
        f" x {args.cohort_days:g} days"
    )
    cohort = cohort_measurements(patients=args.cohort_patients, days=args.cohort_days)
    ours, states = judge_rate(cohort, params=JudgeParams())
    base, bare = welford_rate(cohort)
    rows.append(
        _row(
            f"judge (context, baselines, episodes), {len(cohort):,} mixed readings",
            ours,
            base,
            "Welford mean/var per channel",
            "readings/s",
        )
    )
    sizes = state_sizes(states, bare)
    print(
        f"    {sizes.patient_channels:,} patient-channels with state, {sizes.entries:,} table"
        f" entries (context buckets), {sizes.json_bytes_per_entry:,.0f} B JSON per entry"
    )
    rows.append(
        _row(
            "baseline state in the table, per pt-channel",
            sizes.json_bytes,
            sizes.base_json_bytes,
            "3-float tuple as JSON",
            "bytes",
        )
    )
    rows.append(
        _row(
            "baseline state in process, per pt-channel",
            sizes.memory_bytes,
            sizes.base_memory_bytes,
            "3-float tuple (tracemalloc)",
            "bytes",
        )
    )

    dedup = dedup_sizes(cohort, window_s=DEDUP_WINDOW_S)
    print(
        f"    dedup: {dedup.entries_per_patient:,.0f} entries per patient held over the"
        f" {DEDUP_WINDOW_S / 86400:g}-day window, {dedup.bytes_per_patient:,.0f} B per patient"
    )
    rows.append(
        _row(
            f"dedup state per patient ({DEDUP_WINDOW_S / 86400:g}-day window)",
            dedup.bytes_per_patient,
            dedup.unbounded_bytes_per_patient,
            f"unbounded event ids ({args.cohort_days:g} days)",
            "bytes",
        )
    )

    with (
        tempfile.TemporaryDirectory(prefix="pghd-bench-") as tmp,
        ephemeral_stack(Path(tmp)) as stack,
    ):
        env = stack.env()
        bootstrap = stack.kafka.bootstrap
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics([NewTopic(BENCH_TOPIC, num_partitions=8, replication_factor=1)])
        admin.close()

        print(f"==> ingest: {args.ingest_readings:,} readings over HTTP (ingest only)")
        posted = posted_readings(patients=200, per_patient=args.ingest_readings // 200, seed=1)
        with running_pipeline(
            stack_env=env, influx=stack.influx, workdir=Path(tmp) / "a", services=("ingest",)
        ) as pipeline:
            ours = asyncio.run(ingest_rate(pipeline, posted, batch=500, clients=4))
        # The records ingest wrote for those requests: one per patient per request, gzip,
        # the same three headers; produced again, bare.
        ingest_records = enveloped_requests(
            patients=200, per_patient=args.ingest_readings // 200, seed=1, batch=500
        )
        bare_ingest = asyncio.run(
            produce(
                bootstrap,
                BENCH_TOPIC,
                ingest_records,
                compression="gzip",
                headers=INGEST_HEADERS,
            )
        ) * (len(posted) / len(ingest_records))
        summary["ingest_ratio"] = _ratio(ours, bare_ingest)
        rows.append(
            _row(
                "ingest, batch endpoint",
                ours,
                bare_ingest,
                "bare produce, same records, gzip, headers",
                "readings/s",
            )
        )

        per_request = args.per_request
        print(
            f"==> processors: draining a backlog of {args.backlog:,} readings"
            f" ({per_request} per record: an hourly phone sync of 5-min heart rates)"
        )
        backlog = encoded_measurements(
            patients=400, per_patient=args.backlog // 400, seed=2, per_request=per_request
        )
        asyncio.run(produce(bootstrap, topics.MEASUREMENTS, backlog))
        readings = len(posted) + 400 * (args.backlog // 400)
        backlog_records = end_offsets_sum(bootstrap, topics.MEASUREMENTS)
        per_record = readings / backlog_records
        judge_only = asyncio.run(
            consume_and_judge(bootstrap, topics.MEASUREMENTS, count=readings, params=params)
        )
        influx = InfluxLines(
            url=stack.influx.url,
            token=stack.influx.token,
            org=stack.influx.org,
            bucket=stack.influx.bucket,
            timeout_s=30,
        )
        bare_full = asyncio.run(
            consume_and_judge(
                bootstrap, topics.MEASUREMENTS, count=readings, params=params, influx=influx
            )
        )
        asyncio.run(influx.close())
        ceiling = per_record * asyncio.run(
            faust_ceiling(
                bootstrap, topics.MEASUREMENTS, count=backlog_records, workdir=str(Path(tmp))
            )
        )
        peer = quix_peer_rate(bootstrap, topics.MEASUREMENTS, count=readings, warmup=WARMUP)
        suffix = uuid.uuid4().hex[:8]
        with OffsetWatch(bootstrap, f"pghd-processors-{suffix}", topics.MEASUREMENTS) as watch, \
                OffsetWatch(bootstrap, f"pghd-processors-{suffix}-store", topics.POINTS) as store, \
                running_pipeline(
                    stack_env=env, influx=stack.influx, workdir=Path(tmp) / "b",
                    app_suffix=suffix, warmup=WARMUP, probe_timeout=600,
                ) as pipeline:  # fmt: skip
            watch.wait_for(backlog_records, timeout=600)
            store.wait_for(end_offsets_sum(bootstrap, topics.POINTS), timeout=600)
            ours = readings / (store.samples[-1][0] - watch.first_moving())
            summary["processors_per_s"] = ours
            summary["processors_ratio"] = _ratio(ours, bare_full)
            summary["peer_quix_per_s"] = peer
            summary["processors_vs_quix"] = _ratio(ours, peer)
            rows.append(
                _row(
                    "processors, one worker (judged + stored)",
                    ours,
                    bare_full,
                    "bare consume+judge+InfluxDB",
                    "readings/s",
                )
            )
            rows.append(
                _row(
                    "processors, vs judging alone",
                    ours,
                    judge_only,
                    "bare consume+judge",
                    "readings/s",
                )
            )
            rows.append(
                _row(
                    "processors, vs Faust's ceiling",
                    ours,
                    ceiling,
                    "do-nothing Faust agent",
                    "readings/s",
                )
            )
            rows.append(
                _row(
                    "processors, vs a Quix Streams peer",
                    ours,
                    peer,
                    "Quix 3.28 app, judge+State",
                    "readings/s",
                )
            )

            print(f"==> latency: {args.latency_samples} extreme readings, one at a time")
            lat = asyncio.run(
                post_to_anomaly_latencies(pipeline, patients=args.latency_samples, warmup=WARMUP)
            )
            print(
                f"==> latency under load: {args.open_rate:,} readings/s offered for"
                f" {args.open_seconds:g} s, open loop"
            )
            loop = asyncio.run(
                open_loop_latencies(
                    pipeline,
                    rate=args.open_rate,
                    seconds=args.open_seconds,
                    per_request=args.per_request * 2,
                    patients=args.open_patients,
                    group=f"pghd-processors-{suffix}",
                    warmup=WARMUP,
                )
            )
        print(
            f"    offered {loop.offered_per_s:,.0f} readings/s, {loop.late_posts} posts late,"
            f" {loop.queued_at_end} still queued at the end;"
            f" processors lag (records) every 5 s: {[n for _, n in loop.lag]}"
        )
        print(f"==> recovery: a worker starting on {args.recovery_patients:,} patients' state")
        recovery = recovery_time(
            stack_env=env,
            influx=stack.influx,
            workdir=Path(tmp) / "r",
            template_app_id=f"pghd-processors-{suffix}",
            patients=args.recovery_patients,
            partitions=ProcessorSettings.model_fields["topic_partitions"].default,
            warmup=WARMUP,
        )
        per_100k = recovery.seconds * 100_000 / recovery.patients
        summary["recovery_s_per_100k_patients"] = per_100k
        rows.append(
            _row("restart: 100k patients' state read back", per_100k, float("nan"), "-", "s")
        )
        print(
            f"    {recovery.patients:,} records, {recovery.bytes / 2**20:,.0f} MiB:"
            f" {recovery.seconds:.1f} s longer to start than with no state"
        )
        trips = asyncio.run(round_trips(bootstrap, BENCH_TOPIC, samples=args.latency_samples))
        print(f"==> alerts: {args.alert_anomalies:,} anomalies for 200 patients into alerts")
        records = anomaly_records(patients=200, per_patient=args.alert_anomalies // 200)
        asyncio.run(produce(bootstrap, topics.ANOMALIES, records))
        total = end_offsets_sum(bootstrap, topics.ANOMALIES)
        base = asyncio.run(bare_lifecycle_rate(bootstrap, count=total))
        suffix = uuid.uuid4().hex[:8]
        with OffsetWatch(bootstrap, f"pghd-alerts-{suffix}", topics.ANOMALIES) as watch, \
                running_pipeline(
                    stack_env=env, influx=stack.influx, workdir=Path(tmp) / "c",
                    app_suffix=suffix, services=("ingest", "alerts"),
                ) as pipeline:  # fmt: skip
            watch.wait_for(total, timeout=600)
            alert_rate = watch.rate(total)
            print(f"==> alerts: {args.latency_samples} anomalies, one at a time, to the webhook")
            notify = asyncio.run(notification_latencies(pipeline, samples=args.latency_samples))
        rows.append(
            _row(
                "alerts, one worker",
                alert_rate,
                base,
                "bare consume+lifecycle+produce",
                "anomalies/s",
            )
        )
        summary["alerts_ratio"] = _ratio(alert_rate, base)
        summary["e2e_offered_per_s"] = loop.offered_per_s
        for q in (50, 99):
            summary[f"e2e_p{q}_ms"] = _percentile(loop.latencies, q) * 1000
            rows.append(
                _row(
                    f"POST -> anomaly at {loop.offered_per_s / 1000:.1f}k/s offered, p{q}",
                    _percentile(loop.latencies, q) * 1000,
                    _percentile(trips, q) * 1000,
                    "bare produce->consume",
                    "ms",
                )
            )
        for q in (50, 99):
            rows.append(
                _row(
                    f"POST -> anomaly, idle, p{q}",
                    _percentile(lat, q) * 1000,
                    _percentile(trips, q) * 1000,
                    "bare produce->consume",
                    "ms",
                )
            )
        for q in (50, 99):
            rows.append(
                _row(
                    f"anomaly on topic -> webhook received, p{q}",
                    _percentile(notify, q) * 1000,
                    _percentile(trips, q) * 1000,
                    "bare produce->consume",
                    "ms",
                )
            )

        print(f"==> FHIR: {args.fhir_readings:,} readings in Bundles of {BUNDLE_SIZE}")
        fhir_readings = posted_readings(patients=200, per_patient=args.fhir_readings // 200, seed=5)
        with running_pipeline(
            stack_env=env, influx=stack.influx, workdir=Path(tmp) / "d", services=("ingest",)
        ) as pipeline:
            ours, base = fhir_vs_measurements(pipeline, fhir_readings)
        rows.append(
            _row(
                f"ingest, FHIR Bundles of {BUNDLE_SIZE}",
                ours,
                base,
                f"/v1/measurements, {BUNDLE_SIZE}/request",
                "readings/s",
            )
        )

        print(f"==> Apple Health: an export of {args.apple_health_records:,} records")
        with running_pipeline(
            stack_env=env, influx=stack.influx, workdir=Path(tmp) / "e", services=("ingest",)
        ) as pipeline:
            figures = apple_health_figures(
                Path(tmp),
                records=args.apple_health_records,
                post=args.apple_health_post,
                pipeline=pipeline,
            )
        rows.extend(_row(*figure) for figure in figures)

    print()
    print(f"{'figure':<44} {'pghd':>10} {'unit':<11} {'baseline':>10}  {'ratio':>8}")
    for row in rows:
        print(row)
    write_summary(args.json, summary, rows)
    print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()
