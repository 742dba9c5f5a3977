"""``pghd replay``: judge one patient's exported readings with the processors' own code.

Reads a CSV in one of two shapes, told apart by its header, and writes every row back with
``score``, ``anomaly`` (0/1), ``detector``, ``severity``, ``channel`` and ``error`` added:

* **one metric** (``--metric M``): ``timestamp,value`` rows (blood pressure:
  ``timestamp,systolic,diastolic``), optional ``context`` (rest, sleep, activity),
  ``event_id`` and ``end`` (steps, sleep_duration: the interval's end), and two optional
  companion columns the processors get as readings of their own, without rows of their own
  in the output: ``steps``, the step count in the interval from the previous row's
  timestamp to the row's (the first row: from its timestamp minus the median spacing), and
  ``sleep``, 0/1 per row, each run of 1-rows one sleep session from its first row to the
  next row (after the last row: the median spacing after it). A steps interval or a session
  ingest would refuse (longer than 26 h, ...) is named in the row's ``error`` column; the
  row's value is still judged.
* **long** (a ``metric`` column; no ``--metric``): ``timestamp,metric,value`` with optional
  ``unit`` (default: the metric's canonical one), ``end``, ``context`` and ``event_id``, one
  row per reading of any catalogue metric, so a whole export is replayed as the processors
  would see it. Blood pressure is two rows at the same timestamp, ``blood_pressure.systolic``
  and ``blood_pressure.diastolic``, judged as one reading (both rows get its verdict).

Values are in the metric's canonical unit unless ``--unit`` (one metric) or the ``unit``
column (long) names another accepted one (converted as ingest converts it). Timestamps are
ISO 8601; without an offset they are taken as UTC. Readings are judged in time order, steps
and sleep sessions at their end (when a device could have sent them). ``--care-plan
plan.json`` judges with a care plan (the JSON that ``pghd care-plan show --json`` prints, or
just its settings), as the worker would for a patient with that plan. The judging is
:func:`processors.replay.replay_rows`, imported when the command runs (the processors
package is not needed to load the CLI).
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError

from pghd.care_plans import CarePlan, CarePlanSettings
from pghd.catalogue import CATALOGUE, Metric

if TYPE_CHECKING:
    from processors.replay import RowFlag

__all__ = ["FLAG_COLUMNS", "LONG_COLUMNS", "flag_columns", "is_long", "load_care_plan", "replay"]

logger = logging.getLogger(__name__)

#: Columns added to every row of the output.
FLAG_COLUMNS = ("score", "anomaly", "detector", "severity", "channel", "error")

#: Columns a long CSV needs (one row per reading, naming its metric).
LONG_COLUMNS = ("timestamp", "metric", "value")


def flag_columns(flag: RowFlag) -> dict[str, str]:
    """The output columns of one row's verdict (``anomaly`` is empty on a row not judged;
    ``error`` also names the row's companion cells that could not be replayed)."""
    return {
        "score": f"{flag.score:g}" if not flag.error else "",
        "anomaly": ("1" if flag.anomaly else "0") if not flag.error else "",
        "detector": flag.detector,
        "severity": flag.severity,
        "channel": flag.channel,
        "error": flag.problems,
    }


def is_long(header: list[str]) -> bool:
    """Whether a CSV with ``header`` is a long CSV (each row names its metric)."""
    return "metric" in header


def load_care_plan(path: Path, *, patient_id: str) -> CarePlan:
    """The care plan in the JSON file at ``path`` (a whole plan or just its settings), as a
    plan of ``patient_id``; ``typer.BadParameter`` saying what is wrong otherwise."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}", param_hint="--care-plan") from exc
    if not isinstance(raw, dict):
        raise typer.BadParameter(f"{path} must hold a JSON object", param_hint="--care-plan")
    meta = {"schema_version", "patient_id", "updated_at", "updated_by"}
    try:
        settings = CarePlanSettings.model_validate({k: v for k, v in raw.items() if k not in meta})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'plan'}: {e['msg']}" for e in exc.errors()
        )
        raise typer.BadParameter(f"{path}: {problems}", param_hint="--care-plan") from None
    return CarePlan.of(
        settings, patient_id=patient_id, updated_at=datetime.now(UTC), updated_by="replay"
    )


def _needed(metric: Metric) -> tuple[str, ...]:
    values = ("systolic", "diastolic") if CATALOGUE[metric].is_composite else ("value",)
    return ("timestamp", *values)


def _check_header(
    header: list[str],
    *,
    input_path: Path,
    metric: Metric | None,
    unit: str | None,
    companions: dict[str, Metric],
) -> None:
    """Refuse (``typer.BadParameter``) a header that does not fit the options."""
    present = [name for name in companions if name in header]
    if is_long(header):
        if metric is not None:
            raise typer.BadParameter(
                f"{input_path} is a long CSV (its metric column names each row's metric);"
                " leave out --metric",
                param_hint="--metric",
            )
        if unit is not None:
            raise typer.BadParameter(
                f"{input_path} is a long CSV: each row gives its unit in a unit column"
                " (empty: the metric's canonical unit); leave out --unit",
                param_hint="--unit",
            )
        if present:
            raise typer.BadParameter(
                f"{input_path} is a long CSV with {'/'.join(present)} column(s): in a long"
                " CSV steps and sleep are rows of their own (metric steps or sleep_duration,"
                " with an end column); companion columns are for a CSV of one metric",
                param_hint="--input",
            )
        needed: tuple[str, ...] = LONG_COLUMNS
        what = "a long CSV needs"
    elif metric is None:
        raise typer.BadParameter(
            f"{input_path} has no metric column, so it is a CSV of one metric: name it with"
            " --metric (or add a metric column for a long CSV)",
            param_hint="--metric",
        )
    else:
        spec = CATALOGUE[metric]
        if unit is not None and unit not in spec.accepted_units:
            accepted = ", ".join(spec.accepted_units)
            raise typer.BadParameter(
                f"{unit!r} is not a unit of {metric.value}; use one of: {accepted}"
            )
        clash = [name for name in present if companions[name] is metric]
        if clash:
            raise typer.BadParameter(
                f"{input_path} has a {clash[0]} column, the companion that adds"
                f" {metric.value} readings to another metric; for --metric {metric.value}"
                " give the values in the value column",
                param_hint="--input",
            )
        needed = _needed(metric)
        what = f"{metric.value} needs"
    missing = [name for name in needed if name not in header]
    if missing:
        raise typer.BadParameter(
            f"{input_path} lacks column(s) {', '.join(missing)}; {what} {','.join(needed)}",
            param_hint="--input",
        )


def replay(
    input_path: Annotated[
        Path,
        typer.Option(
            "--input",
            exists=True,
            dir_okay=False,
            help="CSV to judge: of one metric (with --metric) or long (see above)",
        ),
    ],
    output_path: Annotated[Path, typer.Option("--output", dir_okay=False, help="CSV to write")],
    metric: Annotated[
        Metric | None,
        typer.Option(help="metric of every row (not with a long CSV, whose rows name theirs)"),
    ] = None,
    unit: Annotated[
        str | None, typer.Option(help="unit of the values; default: the metric's canonical unit")
    ] = None,
    patient_id: Annotated[str, typer.Option("--patient-id", help="patient id to judge as")] = (
        "replay"
    ),
    care_plan: Annotated[
        Path | None,
        typer.Option(
            "--care-plan", exists=True, dir_okay=False, help="judge with this care plan (JSON)"
        ),
    ] = None,
) -> None:
    """Judge one patient's readings from a CSV and write each row with its verdict.

    A CSV of one metric (--metric M): timestamp,value rows (blood pressure:
    timestamp,systolic,diastolic), optional context and event_id, and two
    optional companion columns, fed to the processors as readings of their own:
    steps (the step count since the previous row's timestamp) and sleep (0/1
    per row; each run of 1-rows is one sleep session, ending at the next row).

    A long CSV (it has a metric column; leave out --metric and --unit):
    timestamp,metric,value rows of any metric, optional unit, end (steps,
    sleep_duration: the interval's end), context and event_id. Blood pressure
    is a blood_pressure.systolic and a blood_pressure.diastolic row at the
    same timestamp.

    Every row is written back with score, anomaly, detector, severity, channel
    and error. Examples:

      pghd replay --metric heart_rate --input hr.csv --output out.csv
        hr.csv: timestamp,value,steps,sleep
                2026-11-25T22:55:00Z,61,35,0
                2026-11-25T23:00:00Z,58,0,1

      pghd replay --input export.csv --output out.csv
        export.csv: timestamp,metric,value,unit,end
                    2026-11-25T08:00:00Z,blood_pressure.systolic,128,mmHg,
                    2026-11-25T08:00:00Z,blood_pressure.diastolic,84,mmHg,
                    2026-11-25T08:00:00Z,steps,412,,2026-11-25T08:15:00Z
    """
    from processors.replay import COMPANION_COLUMNS, replay_rows

    with input_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        reader.fieldnames = header
        rows = list(reader)
    _check_header(
        header, input_path=input_path, metric=metric, unit=unit, companions=COMPANION_COLUMNS
    )
    plan = None if care_plan is None else load_care_plan(care_plan, patient_id=patient_id)
    try:
        flags = replay_rows(rows, metric=metric, unit=unit, patient_id=patient_id, plan=plan)
    except ValueError as exc:  # columns that do not fit together (checked above already)
        raise typer.BadParameter(str(exc), param_hint="--input") from None
    columns = [*header, *(c for c in FLAG_COLUMNS if c not in header)]
    with output_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row, flag in zip(rows, flags, strict=True):
            writer.writerow({**row, **flag_columns(flag)})
    kinds = Counter(f"{f.detector} {f.severity}" for f in flags if f.anomaly)
    errors = sum(1 for f in flags if f.error)
    notes = sum(1 for f in flags if f.note)
    typer.echo(f"{len(rows)} rows written to {output_path}: {sum(kinds.values())} anomalies")
    for kind, count in kinds.most_common():
        typer.echo(f"  {count:>6}  {kind}")
    if errors:
        typer.echo(f"{errors} rows not judged (the error column says why)", err=True)
    if notes:
        typer.echo(
            f"{notes} rows with steps/sleep not replayed (the error column says why)", err=True
        )
