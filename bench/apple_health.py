"""Apple Health import: parse rate and peak memory on a generated export, and POST rate.

1. parsing: records/s of :func:`pghd.apple_health.iter_readings` over a generated
   ``export.zip`` (:func:`pghd.simulation.apple_export.write_export`, 1,000,000 records by
   default), against a bare ``xml.etree`` (C) ``iterparse`` of the same ``export.xml``
   counting and clearing elements; both read the zip member as it decompresses. Each runs
   in a fresh subprocess that reports its own peak RSS (``VmHWM``), so the two memory
   figures are comparable and nothing else of this process is counted.
2. with a running ingest: readings/s of ``pghd import apple-health``'s path (parse + ``POST
   /v1/measurements`` in batches of 500, one client, consent enforced) for the first
   ``post`` readings of the export, against plain heart-rate readings posted the same way.

``python -m bench.apple_health`` measures only this (``--post 0``: parsing only, no servers).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.etree.ElementTree import iterparse as bare_iterparse

from pghd.apple_health import ExportStats, iter_readings, open_export
from pghd.simulation.apple_export import MEMBER, history_days, write_export

if TYPE_CHECKING:
    from deploy.local.harness import Pipeline

# The parse figures run in fresh interpreters that import only this module and the parser,
# so their peak RSS is the parser's: the HTTP, Kafka and harness modules are imported in the
# functions that need them.

__all__ = ["Figure", "apple_health_figures", "main", "parse_figures", "post_figure"]

Figure = tuple[str, float, float, str, str]
"""``(name, ours, baseline, baseline name, unit)``, as ``bench.__main__._row`` takes it."""


def _child(kind: str, path: Path) -> dict[str, Any]:
    """Run one parse in a fresh interpreter; its count, seconds and peak RSS."""
    command = [sys.executable, "-m", "bench.apple_health", "--child", kind, str(path)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _run_child(kind: str, path: Path) -> None:
    started = time.perf_counter()
    if kind == "ours":
        stats = ExportStats()
        with open_export(path) as stream:
            for _ in iter_readings(stream, patient_id="bench-ah", stats=stats):
                pass
        count = stats.records
    elif kind == "idle":
        count = 0
    else:
        count = 0
        with zipfile.ZipFile(path) as archive, archive.open(MEMBER) as member:
            for _event, elem in bare_iterparse(member):
                count += 1
                elem.clear()
    seconds = time.perf_counter() - started
    print(json.dumps({"count": count, "seconds": seconds, "peak_mib": _peak_rss_kib() / 1024}))


def _peak_rss_kib() -> int:
    """This process's peak RSS. ``VmHWM`` where Linux has it: ``ru_maxrss`` survives
    ``execve`` and so would count the RSS of the (large) bench process that forked us."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def parse_figures(export: Path, *, records: int) -> list[Figure]:
    """Parse rate (records/s over the whole export) and peak RSS, ours and bare."""
    ours, bare, idle = _child("ours", export), _child("bare", export), _child("idle", export)
    print(
        f"    ours: {ours['count']:,} records in {ours['seconds']:.1f}s;"
        f" bare: {bare['count']:,} elements in {bare['seconds']:.1f}s;"
        f" the interpreter with these imports alone: {idle['peak_mib']:.1f} MiB RSS"
    )
    return [
        (
            f"apple health parse, {records:,} records",
            records / ours["seconds"],
            records / bare["seconds"],
            "bare C iterparse counting",
            "records/s",
        ),
        (
            "apple health parse, peak RSS",
            ours["peak_mib"],
            bare["peak_mib"],
            "bare C iterparse counting",
            "MiB",
        ),
    ]


POST_MAX_DAYS = 85
"""History the POST figure's export may span: inside ingest's default 90-day raw retention."""


def post_figure(pipeline: Pipeline, export: Path, *, readings: int) -> Figure:
    """Readings/s parsed and posted as ``pghd import apple-health`` does, vs plain posts."""
    import httpx

    from bench.runs import ingest_rate
    from bench.workloads import posted_readings
    from deploy.local.harness import API_KEY
    from pghd.catalogue import Metric
    from pghd.commands.simulate import Tally, post_readings

    patient = "bench-apple-health"
    pipeline.enroll(patient, [m.value for m in Metric])
    tally = Tally()
    headers = {"X-API-Key": API_KEY}
    started = time.perf_counter()
    with (
        open_export(export) as stream,
        httpx.Client(base_url=pipeline.ingest_url, headers=headers, timeout=60) as client,
    ):
        todo = islice(iter_readings(stream, patient_id=patient), readings)
        post_readings(todo, client=client, batch_size=500, tally=tally)
    ours = tally.posted / (time.perf_counter() - started)
    if tally.accepted != tally.posted:
        raise RuntimeError(f"ingest refused bench readings: {dict(tally.rejected)}")
    plain = posted_readings(patients=100, per_patient=max(1, tally.posted // 100), seed=9)
    base = asyncio.run(ingest_rate(pipeline, plain, batch=500, clients=1))
    return (
        f"apple health import via POST, {tally.posted:,}",
        ours,
        base,
        "plain readings, same POSTs",
        "readings/s",
    )


def apple_health_figures(
    workdir: Path, *, records: int, post: int, pipeline: Pipeline | None = None
) -> list[Figure]:
    """Generate the export under ``workdir``, then the parse (and, with ``pipeline``, POST)
    figures."""
    export = workdir / "export.zip"
    started = time.perf_counter()
    summary = write_export(export, records=records, end=datetime.now(UTC) - timedelta(hours=1))
    print(
        f"    generated {summary.records:,} records ({export.stat().st_size / 2**20:,.0f} MiB"
        f" zip) in {time.perf_counter() - started:.0f}s"
    )
    figures = parse_figures(export, records=summary.records + summary.correlations)
    if pipeline is not None and post > 0:
        # Ingest refuses readings older than the raw retention (90 days), and a large export
        # spans years: the POST figure gets an export of its own, recent enough to be taken.
        if history_days(post) > POST_MAX_DAYS:
            raise ValueError(
                f"an export of {post:,} records spans {history_days(post)} days, beyond the"
                f" {POST_MAX_DAYS} days of raw retention ingest takes; post fewer records"
            )
        recent = workdir / "recent-export.zip"
        write_export(recent, records=post, end=datetime.now(UTC) - timedelta(hours=1))
        figures.append(post_figure(pipeline, recent, readings=post))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.apple_health", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument(
        "--post", type=int, default=30_000, help="records of a recent export to POST; 0: none"
    )
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _run_child(args.child[0], Path(args.child[1]))
        return
    from deploy.local.ephemeral import ephemeral_stack
    from deploy.local.harness import running_pipeline

    with tempfile.TemporaryDirectory(prefix="pghd-bench-ah-") as tmp:
        if args.post <= 0:
            figures = apple_health_figures(Path(tmp), records=args.records, post=0)
        else:
            with (
                ephemeral_stack(Path(tmp)) as stack,
                running_pipeline(
                    stack_env=stack.env(),
                    influx=stack.influx,
                    workdir=Path(tmp) / "a",
                    services=("ingest",),
                ) as pipeline,
            ):
                figures = apple_health_figures(
                    Path(tmp), records=args.records, post=args.post, pipeline=pipeline
                )
    for name, ours, base, base_name, unit in figures:
        ratio = ours / base
        print(f"{name:<44} {ours:>10,.1f} {unit:<11} {base:>10,.1f}  {ratio:>7.2f}x  ({base_name})")


if __name__ == "__main__":
    main()
