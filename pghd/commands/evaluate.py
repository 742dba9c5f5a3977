"""``pghd evaluate``: the detectors' sensitivity and false alarms on a labelled synthetic cohort.

Generates a deterministic cohort (:func:`pghd.simulation.generate_cohort`, fixed seed and end
time) of streams shaped like what devices send (bare heart rate, steps as interval counts,
sleep as sessions, late syncs; ``--oracle-context`` adds the true context to every reading
instead), replays it patient by patient in arrival order through the processors' own
canonicalization and judging and through the alerts service's lifecycle
(:func:`processors.evaluation.evaluate_cohort`, imported when the command runs) and prints,
at two levels (anomalies the processors publish; notifications care teams get), per episode
kind how many episodes were detected, how fast and with how many anomalies, then the false
alert-days per patient-month of healthy patients and of episode patients outside their
episodes, and which channel and detector raised the false alerts.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from tqdm import tqdm

from pghd.contracts import Severity
from pghd.simulation import generate_cohort

if TYPE_CHECKING:
    from processors.evaluation import Evaluation, FalseAlerts, KindScore

__all__ = ["COHORT_END", "evaluate", "format_evaluation"]

logger = logging.getLogger(__name__)

#: End of every evaluated cohort: a fixed time, so the same options give the same table.
COHORT_END = datetime(2026, 11, 1, tzinfo=UTC)


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _false_line(label: str, figures: FalseAlerts) -> str:
    return (
        f"  {label:<44} {figures.patients:>8} {figures.patient_days:>12.1f}"
        f" {figures.alert_days:>13} {_num(figures.per_patient_month, '.2f'):>17}"
    )


def _kinds(kinds: list[KindScore], *, anomalies: bool) -> list[str]:
    extra = f" {'anomalies/episode':>19}" if anomalies else ""
    lines = [
        f"  {'episode kind':<14} {'episodes':>8} {'detected':>8} {'sensitivity':>11}"
        f" {'median delay (min)':>18}{extra}  first flagged by"
    ]
    for k in kinds:
        by = ", ".join(f"{name} {count}" for name, count in k.first_detectors.items())
        per = ""
        if anomalies:
            shown = (
                "-"
                if k.anomalies_median is None
                else f"{k.anomalies_median:g} (max {k.anomalies_max})"
            )
            per = f" {shown:>19}"
        lines.append(
            f"  {k.kind:<14} {k.episodes:>8} {k.detected:>8} {_num(k.sensitivity, '.2f'):>11}"
            f" {_num(k.median_delay_min, '.1f'):>18}{per}  {by or '-'}"
        )
    return lines


def _false(healthy: FalseAlerts, outside: FalseAlerts, *, what: str) -> list[str]:
    return [
        f"false {what}-days (UTC days with >= 1 {what}) per patient-month (30 patient-days):",
        f"  {'':<44} {'patients':>8} {'patient-days':>12} {what + '-days':>13}"
        f" {'per patient-month':>17}",
        _false_line("healthy patients (no episode)", healthy),
        _false_line("episode patients, outside episode windows", outside),
    ]


def format_evaluation(evaluation: Evaluation) -> str:
    """The evaluation as the text table ``pghd evaluate`` prints."""
    e = evaluation
    streams = (
        "oracle context labels on every reading (--oracle-context)"
        if e.labels
        else "unlabelled streams, as devices send them"
    )
    lines = [
        f"cohort: {e.patients} patients x {e.days:g} days after a {e.warmup_days:g}-day warm-up,"
        f" seed {e.seed}, {streams}; {e.readings} readings judged, {e.rejected} rejected at"
        " ingest",
        f"an episode counts as detected by an alert on its metrics in [start, end + "
        f"{e.grace_hours:g} h]",
        "",
        f"1. anomalies the processors publish (alert = onset or update of severity >="
        f" {e.min_severity}):",
        *_kinds(e.kinds, anomalies=True),
        "",
        *_false(e.healthy, e.outside_episodes, what="alert"),
        "",
        "2. notifications care teams get (the alerts service's grouping, routing, budget and"
        " digest, deploy/alerts/routing.example.json, replayed on event time):",
        *_kinds(e.care.kinds, anomalies=False),
        "",
        *_false(e.care.healthy, e.care.outside_episodes, what="page"),
        "",
        f"episodes published (one per departure of a patient, all channels):"
        f" {e.episodes_emitted}; anomalies per episode (onset, updates, end):"
        f" {_num(e.anomalies_per_episode, '.2f')} on average,"
        f" {_num(e.anomalies_per_episode_p95, 'd')} at the 95th percentile,"
        f" {_num(e.anomalies_per_episode_max, 'd')} at most; provisional findings withdrawn:"
        f" {e.withdrawn}",
        "",
        "false alerts by channel / detector (anomaly level, both groups above):",
        f"  {'channel':<26} {'detector':<19} {'anomalies':>9} {'critical':>8} {'alert-days':>10}"
        f" {'per patient-month':>17}",
    ]
    lines += [
        f"  {s.channel:<26} {s.detector:<19} {s.anomalies:>9} {s.critical:>8} {s.alert_days:>10}"
        f" {_num(s.per_patient_month, '.2f'):>17}"
        for s in e.sources
    ] or ["  (none)"]
    return "\n".join(lines)


def evaluate(
    patients: Annotated[int, typer.Option(min=1, help="patients in the cohort")] = 200,
    days: Annotated[float, typer.Option(min=1.0, help="days scored per patient")] = 30.0,
    warmup_days: Annotated[
        float,
        typer.Option(min=0.0, help="days before the scored ones, while baselines form"),
    ] = 14.0,
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
    workers: Annotated[
        int, typer.Option(min=1, help="processes replaying patients side by side")
    ] = max(1, min(4, os.cpu_count() or 1)),
    oracle_context: Annotated[
        bool,
        typer.Option(
            "--oracle-context",
            help="label every reading with the true context (sleep/rest/activity), which no "
            "real device sends; by default only an Apple-Watch-like watch's motion context",
        ),
    ] = False,
) -> None:
    """Replay a labelled synthetic cohort through the detectors and print how they score."""
    from processors.evaluation import evaluate_cohort

    cohort = generate_cohort(
        patients=patients,
        days=days + warmup_days,
        end=COHORT_END,
        seed=seed,
        episodes_fraction=episodes_fraction,
        labels=oracle_context,
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
            warmup=timedelta(days=warmup_days),
            labels=oracle_context,
            workers=workers,
            on_patient=advance,
        )
    elapsed = time.monotonic() - started
    typer.echo(format_evaluation(evaluation))
    typer.echo(f"\nreplayed in {elapsed:.1f}s ({evaluation.readings / max(elapsed, 1e-9):.0f}/s)")
    if json_path is not None:
        json_path.write_text(json.dumps(evaluation.to_dict(), indent=2) + "\n")
        typer.echo(f"table written to {json_path}")
