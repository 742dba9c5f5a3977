"""``pghd replay``: judge one patient's exported readings with the processors' own code.

Reads a CSV of ``timestamp,value`` rows (blood pressure: ``timestamp,systolic,diastolic``),
with optional ``context`` (rest, sleep, activity) and ``event_id`` columns, and writes every
row back with ``score``, ``anomaly`` (0/1), ``detector``, ``severity``, ``channel`` and
``error`` added. Values are in the metric's canonical unit unless ``--unit`` names another
accepted one (converted as ingest converts it). Timestamps are ISO 8601; without an offset
they are taken as UTC. ``--care-plan plan.json`` judges with a care plan (the JSON that
``pghd care-plan show --json`` prints, or just its settings), as the worker would for a
patient with that plan. The judging is :func:`processors.replay.replay_rows`, imported when
the command runs (the processors package is not needed to load the CLI).
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

__all__ = ["FLAG_COLUMNS", "flag_columns", "load_care_plan", "replay"]

logger = logging.getLogger(__name__)

#: Columns added to every row of the output.
FLAG_COLUMNS = ("score", "anomaly", "detector", "severity", "channel", "error")


def flag_columns(flag: RowFlag) -> dict[str, str]:
    """The output columns of one row's verdict (``anomaly`` is empty on a row not judged)."""
    return {
        "score": f"{flag.score:g}" if not flag.error else "",
        "anomaly": ("1" if flag.anomaly else "0") if not flag.error else "",
        "detector": flag.detector,
        "severity": flag.severity,
        "channel": flag.channel,
        "error": flag.error,
    }


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


def replay(
    metric: Annotated[Metric, typer.Option(help="metric of every row")],
    input_path: Annotated[
        Path,
        typer.Option("--input", exists=True, dir_okay=False, help="CSV: timestamp,value,..."),
    ],
    output_path: Annotated[Path, typer.Option("--output", dir_okay=False, help="CSV to write")],
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
    """Judge one patient's readings of METRIC from a CSV and write each row with its verdict."""
    from processors.replay import replay_rows

    spec = CATALOGUE[metric]
    if unit is not None and unit not in spec.accepted_units:
        accepted = ", ".join(spec.accepted_units)
        raise typer.BadParameter(
            f"{unit!r} is not a unit of {metric.value}; use one of: {accepted}"
        )
    with input_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        reader.fieldnames = header
        rows = list(reader)
    missing = [name for name in _needed(metric) if name not in header]
    if missing:
        raise typer.BadParameter(
            f"{input_path} lacks column(s) {', '.join(missing)}; {metric.value} needs"
            f" {','.join(_needed(metric))}",
            param_hint="--input",
        )
    plan = None if care_plan is None else load_care_plan(care_plan, patient_id=patient_id)
    flags = replay_rows(rows, metric=metric, unit=unit, patient_id=patient_id, plan=plan)
    columns = [*header, *(c for c in FLAG_COLUMNS if c not in header)]
    with output_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row, flag in zip(rows, flags, strict=True):
            writer.writerow({**row, **flag_columns(flag)})
    kinds = Counter(f"{f.detector} {f.severity}" for f in flags if f.anomaly)
    errors = sum(1 for f in flags if f.error)
    typer.echo(f"{len(rows)} rows written to {output_path}: {sum(kinds.values())} anomalies")
    for kind, count in kinds.most_common():
        typer.echo(f"  {count:>6}  {kind}")
    if errors:
        typer.echo(f"{errors} rows not judged (the error column says why)", err=True)
