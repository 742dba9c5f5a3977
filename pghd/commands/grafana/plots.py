"""Drawing the rows of the boards' queries with matplotlib (one figure per board)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["SEVERITY_COLOURS", "Rows", "render_cohort", "render_patient"]

logger = logging.getLogger(__name__)

SEVERITY_COLOURS = {"info": "tab:blue", "warning": "tab:orange", "critical": "tab:red"}

Rows = Callable[..., list[dict[str, Any]]]


def render_cohort(rows: Rows, *, out: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(14, 9), gridspec_kw={"height_ratios": [1, 1.3]})
    (sev_ax, time_ax), (fresh_ax, table_ax) = axes
    counts = {r["severity"]: int(r["patients"]) for r in rows("cohort_patients_by_severity")}
    names = [s for s in SEVERITY_COLOURS if s in counts] or list(SEVERITY_COLOURS)
    sev_ax.bar(names, [counts.get(n, 0) for n in names], color=[SEVERITY_COLOURS[n] for n in names])
    sev_ax.set_title("Patients with anomalies in the last 24 h, by severity")
    sev_ax.set_ylabel("patients")
    series: dict[str, list[tuple[datetime, int]]] = {}
    for r in rows("cohort_anomalies_over_time"):
        series.setdefault(r["severity"], []).append((r["_time"], int(r["anomalies"])))
    for severity, points in sorted(series.items()):
        points.sort()
        time_ax.plot(
            *zip(*points, strict=True),
            label=severity,
            marker=".",
            lw=1,
            color=SEVERITY_COLOURS.get(severity),
        )
    time_ax.set_title("Anomalies per hour, by severity")
    time_ax.legend()
    time_ax.tick_params(axis="x", labelrotation=30)
    fresh = rows("cohort_freshness")
    ages = [float(r["age_seconds"]) for r in fresh]
    colours = [_freshness_colour(age) for age in ages]
    fresh_ax.barh([r["patient_id"] for r in fresh], [a / 60 for a in ages], color=colours)
    fresh_ax.invert_yaxis()
    fresh_ax.set_title("Data freshness: time since each patient's last reading (< 1 h green)")
    fresh_ax.set_xlabel("minutes")
    latest = rows("cohort_latest_vitals")
    columns = [
        "heart_rate",
        "spo2",
        "body_temperature",
        "blood_pressure.systolic",
        "respiratory_rate",
        "blood_glucose",
    ]
    cells = [[r["patient_id"]] + [_fmt(r.get(c)) for c in columns] for r in latest]
    table_ax.axis("off")
    table_ax.set_title("Latest value per vital")
    if cells:
        headers = ["patient", "HR /min", "SpO2 %", "temp °C", "SBP mmHg", "RR /min", "glucose"]
        table = table_ax.table(cellText=cells, colLabels=headers, loc="upper center")
        table.auto_set_font_size(False)
        table.set_fontsize(8)
        table.scale(1, 1.2)
    fig.suptitle("Cohort overview (data of the board's panels)")
    fig.tight_layout()
    path = out / "cohort-overview.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def render_patient(rows: Rows, *, patient: str, out: Path) -> Path:
    import matplotlib.pyplot as plt

    channels = [str(r["_value"]) for r in rows("patient_channels", patient=patient)]
    flagged = {c for c in channels if rows("patient_anomaly_points", patient=patient, channel=c)}
    usual = [c for c in ("heart_rate", "spo2") if c in channels and c not in flagged]
    shown = (sorted(flagged) + usual)[:4] or channels[:4]
    resting = rows("patient_resting_heart_rate", patient=patient)
    panels = len(shown) + (1 if resting else 0)
    fig, axes = plt.subplots(panels, 1, figsize=(14, 2.6 * panels), sharex=True, squeeze=False)
    for region in rows("patient_episode_regions", patient=patient):
        for ax in axes[:, 0]:
            ax.axvspan(region["_time"], region["timeEnd"], color="tab:orange", alpha=0.12, lw=0)
    if resting:
        ax = axes[-1, 0]
        for kind in sorted({str(r["series"]) for r in resting}):
            points = [r for r in resting if r["series"] == kind]
            ax.plot(
                [r["_time"] for r in points],
                [r["_value"] for r in points],
                marker="o",
                lw=1,
                label=f"resting heart rate, {kind}",
            )
        ax.set_ylabel("resting heart rate", fontsize=8)
        ax.legend(loc="upper left", fontsize=8)
    for ax, channel in zip(axes[:, 0], shown, strict=False):
        variables = {"patient": patient, "channel": channel}
        band = rows("patient_baseline_band", **variables)
        if band:
            ax.fill_between(
                [r["_time"] for r in band],
                [r["low"] for r in band],
                [r["high"] for r in band],
                color="tab:green",
                alpha=0.2,
                step="post",
                label="baseline band",
            )
        readings = rows("patient_readings", **variables)
        ax.plot(
            [r["_time"] for r in readings],
            [r["reading"] for r in readings],
            color="tab:blue",
            lw=1,
            label="reading (mean per window)",
        )
        for r in rows("patient_anomaly_points", **variables):
            ax.scatter(
                r["_time"], r["anomaly"], color=SEVERITY_COLOURS.get(r["severity"]), s=18, zorder=3
            )
        ax.set_ylabel(channel, fontsize=8)
    axes[0, 0].legend(loc="upper left", fontsize=8)
    axes[0, 0].set_title(
        f"Patient detail: {patient} (dots: anomalies, orange warning, red critical;"
        " shaded: episodes)"
    )
    fig.tight_layout()
    path = out / "patient-detail.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _freshness_colour(age_s: float) -> str:
    """The board's thresholds: green under 1 h, orange under 6 h, red beyond."""
    return "tab:green" if age_s < 3600 else "tab:orange" if age_s < 6 * 3600 else "tab:red"


def _fmt(value: Any) -> str:
    return "" if value is None else f"{float(value):.1f}"
