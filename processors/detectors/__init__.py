"""Detectors: pure functions from one channel value (and its baseline) to a finding.

A :class:`Finding` carries a *clause* rather than a sentence so that the judge can merge
several findings on the same reading into one sentence a nurse can read, e.g.
``Heart rate 182 /min is far above this patient's usual 71 /min (typical spread 4) and in
the NEWS2 score-3 band (≥131 /min).``
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pghd.catalogue import CATALOGUE, Metric
from pghd.contracts import Severity

__all__ = ["Finding", "channel_label", "display_unit", "fmt_number", "sentence"]

_LABELS: dict[str, str] = {
    "heart_rate": "Heart rate",
    "resting_heart_rate": "Resting heart rate",
    "hrv_sdnn": "Heart-rate variability (SDNN)",
    "spo2": "SpO2",
    "respiratory_rate": "Respiratory rate",
    "body_temperature": "Temperature",
    "blood_pressure.systolic": "Systolic blood pressure",
    "blood_pressure.diastolic": "Diastolic blood pressure",
    "blood_glucose": "Blood glucose",
    "sleep_duration": "Sleep duration",
}

_UNITS: dict[str, str] = {"Cel": "°C", "mm[Hg]": "mmHg", "{steps}": "steps"}


@dataclass(frozen=True, slots=True)
class Finding:
    """What one detector says about one channel value.

    ``clause`` completes ``"<label> <value> <unit> is ..."``, e.g. ``"in the NEWS2 score-3
    band (≤91 %)"``. ``score`` is on the detector's own scale (|z| for ``deviation``, the
    band score for ``news2``).
    """

    detector: str
    severity: Severity
    score: float
    clause: str
    uses_baseline: bool = False


def fmt_number(value: float, decimals: int = 1) -> str:
    """``value`` rounded half-up to ``decimals`` places, without a trailing ``.0``."""
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    scale = 10**decimals
    rounded = math.floor(abs(value) * scale + 0.5 + 1e-9) / scale
    text = f"{rounded:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text if value >= 0 or rounded == 0 else f"-{text}"


def display_unit(unit: str) -> str:
    """A UCUM unit as a nurse writes it (``Cel`` → ``°C``, ``mm[Hg]`` → ``mmHg``)."""
    return _UNITS.get(unit, unit)


def channel_label(channel: str) -> str:
    """Human name of a channel key (``blood_pressure.systolic`` → ``Systolic blood pressure``)."""
    if channel in _LABELS:
        return _LABELS[channel]
    metric = channel.split(".", 1)[0]
    try:
        return CATALOGUE[Metric(metric)].description or channel
    except ValueError:
        return channel


def sentence(*, channel: str, value: float, unit: str, findings: list[Finding]) -> str:
    """One sentence joining the clauses of ``findings`` (most important first)."""
    clauses = " and ".join(f.clause for f in findings)
    return f"{channel_label(channel)} {fmt_number(value)} {display_unit(unit)} is {clauses}."
