"""``pghd import apple-health``: an Apple Health export into the ingest API, resumably.

The export (``export.zip`` or ``export.xml``) is parsed as it streams
(:mod:`pghd.apple_health`) and its readings are posted in batches to ``POST
/v1/measurements``, so they take the same validation and consent path as any device's; 503
and 429 are retried after ``Retry-After`` and network errors with backoff
(:func:`pghd.commands.simulate.post_readings`). A progress bar follows the bytes of
``export.xml`` parsed (the number of records is not known before the end).

Resuming: after every answered batch a checkpoint file (next to the export, or ``--state``)
records how many readings the API has answered, with a fingerprint of the export and the
patient. Run the same command again after an interruption and it parses past those
readings without posting them (the order is deterministic); the readings' event ids are
deterministic too, so a batch posted twice is stored once. ``--restart`` ignores the
checkpoint. Exit codes: 0 done, 1 error (the checkpoint keeps what was done), 3 stopped by
``--stop-after``, 130 interrupted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from tqdm import tqdm

from pghd.apple_health import ExportError, ExportStats, ExportStream, check_export, open_export
from pghd.apple_health import iter_readings as apple_readings
from pghd.commands.simulate import ApiUnavailable, Tally, post_readings
from pghd.contracts import ID_PATTERN

__all__ = ["Checkpoint", "app", "apple_health", "fingerprint"]

app = typer.Typer(help="Import health-data exports through the ingest API.", no_args_is_help=True)

STOPPED = 3
_FINGERPRINT_SPAN = 1 << 20


class _StopRequested(Exception):
    """``--stop-after`` batches were posted."""


@dataclass
class Checkpoint:
    """How far an import of one export for one patient got."""

    fingerprint: str
    patient_id: str
    acknowledged: int = 0
    complete: bool = False
    export: str = ""
    updated_at: str = ""

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        try:
            data = json.loads(path.read_text())
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def save(self, path: Path) -> None:
        """Write atomically (a crash mid-write leaves the previous checkpoint)."""
        self.updated_at = datetime.now(UTC).isoformat()
        temp = path.with_name(path.name + ".tmp")
        temp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(temp, path)


def fingerprint(path: Path) -> str:
    """A cheap identity of an export file: its size and its first and last MiB."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        digest.update(f.read(_FINGERPRINT_SPAN))
        f.seek(max(0, size - _FINGERPRINT_SPAN))
        digest.update(f.read(_FINGERPRINT_SPAN))
    return digest.hexdigest()


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


def _with_progress(
    readings: Iterator[dict[str, Any]], stream: ExportStream, bar: tqdm[Any]
) -> Iterator[dict[str, Any]]:
    for index, reading in enumerate(readings):
        if index % 256 == 0:
            bar.update(stream.position - bar.n)
        yield reading
    bar.update(stream.position - bar.n)


def _summary(stats: ExportStats, tally: Tally, *, skipped: int, elapsed: float) -> str:
    imported = [(kind, n) for kind, n in stats.by_type.most_common() if kind not in stats.skipped]
    lines = [
        f"records   {stats.records} read in {elapsed:.1f}s",
        *(f"  {n:>9}  {kind}" for kind, n in imported),
        f"readings  {stats.total_readings}",
        *(f"  {n:>9}  {metric}" for metric, n in stats.readings.most_common()),
        f"posted    {tally.posted} readings"
        + (f" (the first {skipped} were posted by an earlier run)" if skipped else "")
        + f", {tally.retries} retried batches",
        f"accepted  {tally.accepted}",
        f"rejected  {sum(tally.rejected.values())}",
        *(f"  {n:>9}  {reason}" for reason, n in tally.rejected.most_common()),
    ]
    if stats.problems:
        lines.append(f"invalid   {sum(stats.problems.values())} records (not posted)")
        lines += [f"  {n:>9}  {reason}" for reason, n in stats.problems.most_common()]
    if stats.skipped:
        lines.append(f"skipped   {sum(stats.skipped.values())} records of unsupported types")
        lines += [f"  {n:>9}  {kind}" for kind, n in stats.skipped.most_common()]
    return "\n".join(lines)


def _earlier(checkpoint: Checkpoint | None, *, fp: str, patient: str, state: Path) -> Checkpoint:
    """The checkpoint to go on from: the one found if it is for this export and patient."""
    if checkpoint is not None and (checkpoint.fingerprint, checkpoint.patient_id) == (fp, patient):
        return checkpoint
    if checkpoint is not None:
        typer.echo(f"note      {state} is for another export or patient; starting afresh")
    return Checkpoint(fingerprint=fp, patient_id=patient)


@app.command(name="apple-health")
def apple_health(
    export: Annotated[Path, typer.Argument(help="export.zip (or export.xml) from the Health app")],
    patient: Annotated[str, typer.Option("--patient", help="patient id the readings belong to")],
    url: Annotated[str, typer.Option(help="ingest base URL")] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str, typer.Option("--api-key", envvar="PGHD_API_KEY", help="ingest API key (X-API-Key)")
    ] = "",
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="readings per request")] = 500,
    state: Annotated[
        Path | None, typer.Option(help="checkpoint file (default: EXPORT.pghd-import.json)")
    ] = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="ignore the checkpoint; post everything")
    ] = False,
    stop_after: Annotated[
        int | None, typer.Option(min=1, help="stop after this many batches (exit code 3)")
    ] = None,
) -> None:
    """Import an Apple Health export: post its readings to POST /v1/measurements."""
    if not export.is_file():
        raise _fail(f"no such file: {export}")
    if not re.match(ID_PATTERN, patient):
        raise _fail(f"--patient {patient!r} is not a valid patient id ({ID_PATTERN})")
    if not api_key:
        raise _fail("an API key is needed: --api-key or PGHD_API_KEY")
    try:
        check_export(export)
    except ExportError as exc:
        raise _fail(f"{export} cannot be imported: {exc}") from None
    state = state or export.with_name(export.name + ".pghd-import.json")
    fp = fingerprint(export)
    found = None if restart else Checkpoint.load(state)
    progress = _earlier(found, fp=fp, patient=patient, state=state)
    if progress.complete:
        typer.echo(f"done      {export} was imported already ({state}); --restart to post again")
        return
    progress.export, skip = str(export), progress.acknowledged
    stats, tally = ExportStats(), Tally()
    batches = 0

    def on_posted(count: int) -> None:
        nonlocal batches
        progress.acknowledged += count
        progress.save(state)
        batches += 1
        if stop_after is not None and batches >= stop_after:
            raise _StopRequested

    headers = {"X-API-Key": api_key, "User-Agent": "pghd-import"}
    started = time.monotonic()
    if skip:
        typer.echo(f"resuming  after {skip} readings answered by an earlier run ({state})")
    try:
        with (
            open_export(export) as stream,
            httpx.Client(base_url=url, headers=headers, timeout=60.0) as client,
            tqdm(
                total=stream.total, unit="B", unit_scale=True, desc="export.xml", dynamic_ncols=True
            ) as bar,
        ):
            readings = apple_readings(stream, patient_id=patient, stats=stats)
            todo = islice(_with_progress(readings, stream, bar), skip, None)
            post_readings(todo, client=client, batch_size=batch, tally=tally, on_posted=on_posted)
    except _StopRequested:
        typer.echo(_summary(stats, tally, skipped=skip, elapsed=time.monotonic() - started))
        typer.echo(f"stopped   after {batches} batches (--stop-after); run again to resume")
        raise typer.Exit(code=STOPPED) from None
    except (ApiUnavailable, ExportError) as exc:
        typer.echo(_summary(stats, tally, skipped=skip, elapsed=time.monotonic() - started))
        done = progress.acknowledged
        raise _fail(f"{exc}; {done} readings are done, run again to resume") from None
    except KeyboardInterrupt:
        typer.echo(_summary(stats, tally, skipped=skip, elapsed=time.monotonic() - started))
        typer.echo("interrupted; run again to resume", err=True)
        raise typer.Exit(code=130) from None
    progress.complete = True
    progress.save(state)
    typer.echo(_summary(stats, tally, skipped=skip, elapsed=time.monotonic() - started))
