"""``make soak``: a steady stream for 30 minutes with faults injected on a schedule.

Starts its own Kafka and InfluxDB on free loopback ports and the three services (the
harness of the integration tests), then for ``--minutes`` (30 by default):

- devices post heart rate for ``--patients`` patients at ``--rate`` readings/s in all, and
  post again, after Retry-After, whatever ingest refused with 503 (as real clients do);
- every ``--desat-every`` seconds a new patient posts one SpO2 of 85 %: each must give
  exactly one critical anomaly on ``pghd.anomalies.v1`` and one page;
- faults, at fixed fractions of the run (:func:`schedule`): InfluxDB frozen (SIGSTOP),
  the processors worker killed (SIGKILL) and restarted, the alerts worker killed and
  restarted, the Kafka broker killed and restarted on its data dir, InfluxDB stopped.

When the stream ends it waits (up to ``--drain-s``) for the pipeline to catch up, then prints
the counts and writes them to ``.local/bench/soak.json``: readings accepted = stored (each
once), anomalies expected = emitted (each once), pages per paged patient = 1, and the
re-sends of one notification id (a receiver that deduplicates on it drops them). It exits
non-zero when one of those does not hold. ``--minutes 3`` gives a short smoke run of the
same schedule.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from deploy.local.ephemeral import EphemeralStack, ephemeral_stack
from deploy.local.harness import Pipeline, reading, running_pipeline, wait_for
from deploy.local.process import start_detached
from deploy.local.stack import StackPaths
from deploy.local.topics import read_from_start
from pghd import topics, wire
from pghd.contracts import Anomaly

__all__ = ["Fault", "Tally", "main", "schedule"]

OUT = StackPaths.for_root().root / ".local" / "bench" / "soak.json"


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault: what, when (seconds into the run) and for how long."""

    name: str
    at_s: float
    duration_s: float = 0.0


def schedule(total_s: float) -> list[Fault]:
    """The faults of a run of ``total_s`` seconds, at fixed fractions of it."""
    outage = max(30.0, 0.04 * total_s)
    return [
        Fault("influxdb frozen (SIGSTOP)", 0.15 * total_s, outage),
        Fault("processors worker killed", 0.35 * total_s),
        Fault("alerts worker killed", 0.50 * total_s),
        Fault("kafka broker killed", 0.65 * total_s, 15.0),
        Fault("influxdb stopped", 0.80 * total_s, outage),
    ]


@dataclass
class Tally:
    """What the run counted; :meth:`verdicts` says which promises held."""

    accepted: int = 0
    stored: int = 0
    refused_503: int = 0
    anomalies_expected: int = 0
    anomalies_emitted: int = 0
    anomaly_duplicates_on_topic: int = 0
    patients_paged: int = 0
    patients_paged_twice: int = 0
    same_id_resends: int = 0
    faults: list[str] = field(default_factory=list)

    def verdicts(self) -> dict[str, bool]:
        return {
            "accepted = stored": self.accepted == self.stored,
            "anomalies expected = emitted": self.anomalies_expected == self.anomalies_emitted,
            "no anomaly twice on the topic": self.anomaly_duplicates_on_topic == 0,
            "every desaturation paged": self.patients_paged == self.anomalies_expected,
            "notifications duplicated = 0": self.patients_paged_twice == 0,
        }

    def table(self) -> str:
        rows = [
            ("readings accepted (202)", self.accepted),
            ("readings stored in InfluxDB", self.stored),
            ("503 refusals, posted again", self.refused_503),
            ("anomalies expected", self.anomalies_expected),
            ("anomalies emitted (distinct)", self.anomalies_emitted),
            ("anomalies twice on the topic", self.anomaly_duplicates_on_topic),
            ("patients paged", self.patients_paged),
            ("notifications duplicated", self.patients_paged_twice),
            ("same-id re-sends (receiver dedups)", self.same_id_resends),
        ]
        lines = [f"  {name:<38} {value:>9,}" for name, value in rows]
        lines += [f"  {'ok  ' if ok else 'FAIL'} {what}" for what, ok in self.verdicts().items()]
        return "\n".join(lines)


class Devices:
    """The posting side: a thread per stream, retrying 503s after Retry-After."""

    def __init__(self, pipeline: Pipeline, *, patients: int, rate: float, run: str) -> None:
        self.pipeline = pipeline
        self.names = [f"soak-{run}-hr-{i:05d}" for i in range(patients)]
        self.rate = rate
        self.run = run
        self.start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=2)
        self.accepted: collections.Counter[str] = collections.Counter()
        self.accepted_at: dict[tuple[str, str], float] = {}  # (patient, time) -> when 202
        self.desaturated: list[str] = []
        self.refused_503 = 0
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def post(self, body: list[dict[str, object]]) -> bool:
        """Post until accepted (or stopped); count the 202 readings."""
        while not self.stop.is_set():
            try:
                response = self.pipeline.post(body, enroll=False, timeout=20)
            except httpx.HTTPError:
                time.sleep(1.0)
                continue
            if response.status_code == 202:
                with self._lock:
                    for item in response.json().get("items", []) or [{"status": "accepted"}]:
                        if item.get("status") == "accepted":
                            posted = body[item.get("index", 0)]
                            self.accepted[str(posted["patient_id"])] += 1
                            key = (str(posted["patient_id"]), str(posted["effective_time"]))
                            self.accepted_at[key] = time.monotonic()
                return True
            if response.status_code != 503:
                raise RuntimeError(f"ingest answered {response.status_code}: {response.text}")
            with self._lock:
                self.refused_503 += 1
            time.sleep(min(5.0, float(response.headers.get("Retry-After", "1"))))
        return False

    def heart_rate(self, until: float) -> None:
        """One batch a second, one reading per patient, a minute apart per patient."""
        minute = 0
        per_batch = max(1, round(self.rate))
        began = time.monotonic()
        while time.monotonic() < until and not self.stop.is_set():
            at = self.start + timedelta(minutes=minute)
            body = [
                reading(name, 64 + (minute + i) % 5, at, context="rest")
                for i, name in enumerate(self.names[:per_batch])
            ]
            self.post(body)
            minute += 1
            pause = began + minute - time.monotonic()
            if pause > 0:
                time.sleep(pause)

    def desaturations(self, until: float, every_s: float) -> None:
        n = 0
        while time.monotonic() < until and not self.stop.is_set():
            name = f"soak-{self.run}-desat-{n:05d}"
            try:
                self.pipeline.enroll(name, ["spo2"])
            except AssertionError:  # the patients API refused for a minute (broker down)
                n += 1
                continue
            at = datetime.now(UTC) - timedelta(seconds=30)
            if self.post([reading(name, 85, at, metric="spo2", unit="%")]):
                self.desaturated.append(name)
            n += 1
            self.stop.wait(every_s)


def _restart(pipeline: Pipeline, name: str) -> None:
    process = pipeline.processes[name]
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    time.sleep(2.0)
    pipeline.processes[name] = start_detached(
        [sys.executable, "-m", f"{name}.main"],
        log_file=pipeline.logs[name],
        env=pipeline.env,
        die_with_parent=True,
    )


def inject(fault: Fault, *, stack: EphemeralStack, pipeline: Pipeline) -> None:
    """Cause ``fault`` and undo it after its duration (blocking)."""
    influx, kafka = stack.influx, stack.kafka
    if fault.name.startswith("influxdb frozen"):
        assert influx.pid is not None
        os.kill(influx.pid, signal.SIGSTOP)
        time.sleep(fault.duration_s)
        os.kill(influx.pid, signal.SIGCONT)
    elif fault.name.startswith("influxdb stopped"):
        influx.stop()
        time.sleep(fault.duration_s)
        influx.start()
    elif fault.name.startswith("processors"):
        _restart(pipeline, "processors")
    elif fault.name.startswith("alerts"):
        _restart(pipeline, "alerts")
    elif fault.name.startswith("kafka"):
        assert kafka.pid is not None
        os.kill(kafka.pid, signal.SIGKILL)
        wait_for(lambda: True if kafka.pid is None else None, timeout=30, what="broker dead")
        time.sleep(fault.duration_s)
        kafka.start()


def _stored(pipeline: Pipeline, run: str) -> dict[str, int]:
    rows = pipeline.influx.query(
        f'from(bucket: "{pipeline.influx.bucket}") |> range(start: -30d)'
        ' |> filter(fn: (r) => r._measurement == "vitals" and r._field == "value")'
        f" |> filter(fn: (r) => r.patient_id =~ /^soak-{run}-/)"
        ' |> group(columns: ["patient_id"]) |> count()'
    )
    return {str(row["patient_id"]): int(row["_value"]) for row in rows}


def _anomalies(bootstrap: str, run: str) -> list[Anomaly]:
    prefix = f"soak-{run}-desat-".encode()
    return [
        wire.decode(Anomaly, value)
        for key, value in read_from_start(bootstrap, topics.ANOMALIES, idle_ms=10_000)
        if key and key.startswith(prefix)
    ]


def _patients_named(text: str, run: str) -> set[str]:
    """The soak's patient ids in a notification's text (whole ids, not prefixes)."""
    return set(re.findall(rf"soak-{run}-(?:desat|hr)-\d{{5}}", text))


def run_soak(args: argparse.Namespace, workdir: Path) -> Tally:
    total_s = args.minutes * 60.0
    run = f"{int(time.time())}"
    tally = Tally()
    extra = {"PGHD_PROCESSORS_SESSION_TIMEOUT_S": "10", "PGHD_PROCESSORS_INFLUX_TIMEOUT_S": "5"}
    with (
        ephemeral_stack(workdir / "stack") as stack,
        running_pipeline(
            stack_env=stack.env(),
            influx=stack.influx,
            workdir=workdir / "pipeline",
            extra_env=extra,
        ) as pipeline,
    ):
        devices = Devices(pipeline, patients=args.patients, rate=args.rate, run=run)
        for name in devices.names:
            pipeline.enroll(name, ["heart_rate"])
        began = time.monotonic()
        until = began + total_s
        threads = [
            threading.Thread(target=devices.heart_rate, args=(until,), daemon=True),
            threading.Thread(
                target=devices.desaturations, args=(until, args.desat_every), daemon=True
            ),
        ]
        for thread in threads:
            thread.start()
        print(f"==> soak: {args.minutes:g} min, {args.rate:g} readings/s, faults:")
        for fault in schedule(total_s):
            wait = began + fault.at_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            stamp = time.monotonic() - began
            print(f"    {stamp:7.0f} s  {fault.name} ({fault.duration_s:.0f} s)", flush=True)
            inject(fault, stack=stack, pipeline=pipeline)
            tally.faults.append(f"{stamp:.0f}s {fault.name}")
        for thread in threads:
            thread.join(timeout=max(0.0, until - time.monotonic()) + 300)
        devices.stop.set()
        print("==> stream ended; waiting for the pipeline to catch up", flush=True)

        accepted = dict(devices.accepted)
        deadline = time.monotonic() + args.drain_s
        stored: dict[str, int] = {}
        while time.monotonic() < deadline:
            stored = _stored(pipeline, run)
            if all(stored.get(p, 0) >= n for p, n in accepted.items()):
                break
            time.sleep(5)
        expected = set(devices.desaturated)
        found: list[Anomaly] = []
        while time.monotonic() < deadline:
            found = _anomalies(pipeline.kafka_bootstrap, run)
            paged = {p for p in expected if pipeline.sink.messages_about(p)}
            if {a.patient_id for a in found} >= expected and paged >= expected:
                break
            time.sleep(5)

        short = {p: (n, stored.get(p, 0)) for p, n in accepted.items() if stored.get(p, 0) != n}
        for patient, (n, got) in sorted(short.items()):
            print(f"    {patient}: {n} accepted, {got} stored")
            tally.faults.append(f"{patient}: {n} accepted, {got} stored")
            rows = pipeline.vitals(patient)
            have = {row["_time"].isoformat() for row in rows}
            for (who, at), when in sorted(devices.accepted_at.items()):
                if who == patient and datetime.fromisoformat(at).isoformat() not in have:
                    line = f"    missing {patient} {at}, accepted {when - began:.0f} s into the run"
                    print(line)
                    tally.faults.append(line.strip())
        tally.accepted = sum(accepted.values())
        tally.stored = sum(stored.values())  # one point per reading: each has its own minute
        tally.refused_503 = devices.refused_503
        tally.anomalies_expected = len(expected)
        ids = [a.anomaly_id for a in found]
        tally.anomalies_emitted = len(set(ids))
        tally.anomaly_duplicates_on_topic = len(ids) - len(set(ids))
        pages: dict[str, set[str]] = collections.defaultdict(set)
        received: collections.Counter[str] = collections.Counter()
        for body in pipeline.sink.received:
            received[body.get("notification_id", "")] += 1
            for patient in _patients_named(json.dumps(body), run):
                if patient in expected:
                    pages[patient].add(str(body.get("notification_id")))
        tally.patients_paged = len(pages)
        tally.patients_paged_twice = sum(1 for ids_ in pages.values() if len(ids_) > 1)
        tally.same_id_resends = sum(n - 1 for n in received.values() if n > 1)
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the stream")
    parser.add_argument("--patients", type=int, default=40, help="heart-rate patients")
    parser.add_argument("--rate", type=float, default=40.0, help="readings/s in all (<= patients)")
    parser.add_argument("--desat-every", type=float, default=30.0, help="s between desaturations")
    parser.add_argument("--drain-s", type=float, default=300.0, help="catch-up allowed at the end")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="pghd-soak-"))
    tally = run_soak(args, tmp)
    if all(tally.verdicts().values()):
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"==> kept the servers' data and the services' logs in {tmp}")
    print(tally.table())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({**asdict(tally), "verdicts": tally.verdicts()}, indent=2) + "\n")
    print(f"==> written to {OUT}")
    return 0 if all(tally.verdicts().values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
