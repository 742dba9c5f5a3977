"""``pghd evaluate``: the detectors' sensitivity and false alarms on a labelled synthetic cohort.

Generates a deterministic cohort (:func:`pghd.simulation.generate_cohort`, fixed seed and end
time), replays it patient by patient through the processors' own canonicalization and judging
(:func:`processors.evaluation.evaluate_cohort`, imported when the command runs) and prints, per
episode kind, how many episodes were detected and how fast, then the false alert-days per
patient-month of healthy patients and of episode patients outside their episodes, and which
channel and detector raised those false alerts.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from tqdm import tqdm

from pghd.contracts import Severity
from pghd.simulation import generate_cohort

if TYPE_CHECKING:
    from processors.evaluation import Evaluation, FalseAlerts

__all__ = ["COHORT_END", "evaluate", "format_evaluation"]

logger = logging.getLogger(__name__)

#: End of every evaluated cohort: a fixed time, so the same options give the same table.
COHORT_END = datetime(2026, 11, 1, tzinfo=UTC)


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _false_line(label: str, figures: FalseAlerts) -> str:
    return (
        f"  {label:<44} {figures.patients:>8} {figures.patient_days:>12.1f}"
        f" {figures.alert_days:>10} {_num(figures.per_patient_month, '.2f'):>17}"
    )


def format_evaluation(evaluation: Evaluation) -> str:
    """The evaluation as the text table ``pghd evaluate`` prints."""
    e = evaluation
    lines = [
        f"cohort: {e.patients} patients x {e.days:g} days, seed {e.seed};"
        f" {e.readings} readings judged, {e.rejected} rejected at ingest",
        f"alert = anomaly of severity >= {e.min_severity};"
        f" an episode counts as detected by an alert on its metrics in [start, end + "
        f"{e.grace_hours:g} h]",
        "",
        f"  {'episode kind':<14} {'episodes':>8} {'detected':>8} {'sensitivity':>11}"
        f" {'median delay (min)':>18}  first flagged by",
    ]
    for k in e.kinds:
        by = ", ".join(f"{name} {count}" for name, count in k.first_detectors.items())
        lines.append(
            f"  {k.kind:<14} {k.episodes:>8} {k.detected:>8} {_num(k.sensitivity, '.2f'):>11}"
            f" {_num(k.median_delay_min, '.1f'):>18}  {by or '-'}"
        )
    lines += [
        "",
        "false alert-days (UTC days with >= 1 alert) per patient-month (30 patient-days):",
        f"  {'':<44} {'patients':>8} {'patient-days':>12} {'alert-days':>10}"
        f" {'per patient-month':>17}",
        _false_line("healthy patients (no episode)", e.healthy),
        _false_line("episode patients, outside episode windows", e.outside_episodes),
        "",
        "false alerts by channel / detector (both groups above):",
        f"  {'channel':<26} {'detector':<13} {'anomalies':>9} {'critical':>8} {'alert-days':>10}"
        f" {'per patient-month':>17}",
    ]
    lines += [
        f"  {s.channel:<26} {s.detector:<13} {s.anomalies:>9} {s.critical:>8} {s.alert_days:>10}"
        f" {_num(s.per_patient_month, '.2f'):>17}"
        for s in e.sources
    ] or ["  (none)"]
    return "\n".join(lines)


def evaluate(
    patients: Annotated[int, typer.Option(min=1, help="patients in the cohort")] = 200,
    days: Annotated[float, typer.Option(min=1.0, help="days of data per patient")] = 30.0,
    seed: Annotated[int, typer.Option(help="random seed; same seed, same cohort")] = 1,
    episodes_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="share of patients with an episode")
    ] = 0.3,
    min_severity: Annotated[
        Severity, typer.Option(help="lowest anomaly severity that counts as an alert")
    ] = Severity.WARNING,
    grace_hours: Annotated[
        float, typer.Option(min=0.0, help="hours after an episode's end its alerts still count")
    ] = 12.0,
    json_path: Annotated[
        Path | None, typer.Option("--json", dir_okay=False, help="also write the table as JSON")
    ] = None,
) -> None:
    """Replay a labelled synthetic cohort through the detectors and print how they score."""
    from processors.evaluation import evaluate_cohort

    cohort = generate_cohort(
        patients=patients,
        days=days,
        end=COHORT_END,
        seed=seed,
        episodes_fraction=episodes_fraction,
    )
    started = time.monotonic()
    with tqdm(total=patients, unit="patient", desc="replaying", leave=False) as bar:
        judged = 0

        def advance(readings: int) -> None:
            nonlocal judged
            judged += readings
            bar.set_postfix(readings=judged, refresh=False)
            bar.update(1)

        evaluation = evaluate_cohort(
            cohort,
            min_severity=min_severity,
            grace=timedelta(hours=grace_hours),
            on_patient=advance,
        )
    elapsed = time.monotonic() - started
    typer.echo(format_evaluation(evaluation))
    typer.echo(f"\nreplayed in {elapsed:.1f}s ({evaluation.readings / max(elapsed, 1e-9):.0f}/s)")
    if json_path is not None:
        json_path.write_text(json.dumps(evaluation.to_dict(), indent=2) + "\n")
        typer.echo(f"table written to {json_path}")
