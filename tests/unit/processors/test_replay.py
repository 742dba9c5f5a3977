"""Replaying exported rows through the processors' judging code, and ``pghd replay``."""

from __future__ import annotations

import csv
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pghd.catalogue import Metric
from pghd.cli import app
from processors.replay import RowFlag, default_params, replay_rows
from processors.settings import ProcessorSettings

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
NORMAL_HR = [70, 71, 69, 72, 68, 70, 71, 69, 70, 73, 67, 70, 71, 69, 70, 72, 68, 70, 71, 69]


def _stamp(i: int) -> str:
    return (T0 + timedelta(minutes=5 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rows(values: list[float], **extra: str) -> list[dict[str, str]]:
    return [{"timestamp": _stamp(i), "value": str(v), **extra} for i, v in enumerate(values)]


def _resting(values: list[float]) -> list[dict[str, str]]:
    """Heart rates known to be taken at rest: only those are judged against a baseline."""
    return _rows(values, context="rest")


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_default_params_are_the_processor_settings_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.startswith("PGHD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PGHD_PROCESSORS_INFLUX_TOKEN", "u:p")
    assert default_params() == ProcessorSettings().judge_params()  # type: ignore[call-arg]


def test_a_spike_after_twenty_normal_values_is_the_only_anomaly() -> None:
    # heart rate is sampled: a lone spike is a motion artefact, the second in a row is not
    flags = replay_rows(_resting([*NORMAL_HR, 100, 100, 70]), metric=Metric.HEART_RATE)
    assert [f.anomaly for f in flags] == [False] * 21 + [True, False]
    spike = flags[21]
    assert (spike.detector, spike.severity, spike.channel) == (
        "deviation",
        "critical",
        "heart_rate",
    )
    assert spike.score == pytest.approx(7.5, abs=0.5)
    assert all(f == RowFlag() for i, f in enumerate(flags) if i != 21)


def test_rows_are_judged_in_time_order_and_returned_in_input_order() -> None:
    rows = _resting([*NORMAL_HR, 100, 100])
    # the spikes come first in the file (the later one first), last in time: only the
    # second in time is flagged (the first is a lone spike, a possible motion artefact)
    shuffled = [rows[21], rows[20], *rows[:20]]
    flags = replay_rows(shuffled, metric=Metric.HEART_RATE)
    assert [f.anomaly for f in flags] == [True] + [False] * 21


def test_activity_context_is_not_judged_against_the_resting_baseline() -> None:
    rows = _rows([*NORMAL_HR, 150, 150, 150, 150], context="rest")
    rows[20]["context"] = rows[21]["context"] = "activity"
    flags = replay_rows(rows, metric=Metric.HEART_RATE)
    assert not flags[20].anomaly and not flags[21].anomaly
    # nor do they count towards the persistence a heart-rate spike at rest needs: the
    # first one at rest is a lone spike, the second is flagged
    assert not flags[22].anomaly
    assert flags[23].anomaly and flags[23].detector == "deviation"
    assert flags[23].severity == "critical"


def test_values_in_another_unit_are_converted_as_ingest_converts_them() -> None:
    normal = [97.9, 98.1, 98.0, 98.2, 97.8] * 4
    flags = replay_rows(_rows([*normal, 102.2]), metric=Metric.BODY_TEMPERATURE, unit="[degF]")
    assert flags[-1].anomaly and flags[-1].channel == "body_temperature"
    assert (flags[-1].detector, flags[-1].severity) == ("deviation", "critical")
    assert not any(f.anomaly or f.error for f in flags[:-1])
    as_celsius = replay_rows(_rows(normal), metric=Metric.BODY_TEMPERATURE)
    assert all("outside the possible range" in f.error for f in as_celsius)


def test_rows_ingest_would_reject_get_an_error_and_do_not_stop_the_others() -> None:
    rows = _resting([*NORMAL_HR, 999, 100, 100])
    rows.insert(3, {"timestamp": "yesterday", "value": "70", "context": "rest"})
    rows.append({"timestamp": _stamp(40), "value": "", "context": "rest"})
    rows.append(dict(rows[0]))
    flags = replay_rows(rows, metric=Metric.HEART_RATE)
    assert "not an ISO 8601 time" in flags[3].error
    assert "outside the possible range" in flags[21].error
    # the refused 999 was not judged, so the first 100 is a lone spike (not flagged)
    assert not flags[22].anomaly
    assert flags[23].anomaly and flags[23].detector == "deviation"
    assert flags[24].error == "value is missing"
    assert flags[25].error == "repeats data row 1"
    assert [i for i, f in enumerate(flags) if f.error] == [3, 21, 24, 25]


def test_naive_timestamps_are_utc_and_offsets_are_honoured() -> None:
    rows = [
        {"timestamp": f"2026-11-25T08:{i:02d}:00", "value": str(v), "context": "rest"}
        for i, v in enumerate(NORMAL_HR)
    ]
    at_rest = {"value": "100", "context": "rest"}
    rows.append({"timestamp": "2026-11-25T09:10:30+01:00", **at_rest})  # 08:10:30 UTC
    rows.append({"timestamp": "2026-11-25T08:30:00", **at_rest})
    rows.append({"timestamp": "2026-11-25T08:35:00", **at_rest})
    flags = replay_rows(rows, metric=Metric.HEART_RATE)
    # the first 100 came in warm-up, the second is a lone spike, the third is flagged (were
    # the offset ignored, the first would come last in time and be flagged too)
    assert [f.anomaly for f in flags] == [False] * 22 + [True]


def test_blood_pressure_takes_systolic_and_diastolic_columns() -> None:
    rows = [
        {"timestamp": _stamp(i), "systolic": str(120 + i % 3), "diastolic": str(80 - i % 2)}
        for i in range(20)
    ]
    rows.append({"timestamp": _stamp(20), "systolic": "210", "diastolic": "125"})
    flags = replay_rows(rows, metric=Metric.BLOOD_PRESSURE)
    assert [f.anomaly for f in flags] == [False] * 20 + [True]
    assert flags[-1].severity == "critical"
    assert flags[-1].channel == "blood_pressure.systolic"
    assert flags[-1].detector in {"deviation", "hypertension"}


def test_replay_command_writes_every_row_with_its_verdict(tmp_path: Path) -> None:
    # a heart-rate spike is flagged when the next reading repeats it
    source = _write(tmp_path / "readings.csv", _rows([*NORMAL_HR, 100, 100], context="rest"))
    target = tmp_path / "flags.csv"
    result = CliRunner().invoke(
        app,
        ["replay", "--metric", "heart_rate", "--input", str(source), "--output", str(target)],
    )
    assert result.exit_code == 0, result.output
    rows = _read(target)
    assert list(rows[0]) == [
        "timestamp",
        "value",
        "context",
        "score",
        "anomaly",
        "detector",
        "severity",
        "channel",
        "error",
    ]
    assert [r["anomaly"] for r in rows] == ["0"] * 21 + ["1"]
    assert (rows[21]["detector"], rows[21]["severity"]) == ("deviation", "critical")
    assert rows[21]["value"] == "100" and rows[21]["context"] == "rest"
    assert "1 anomalies" in result.stdout


def test_replay_command_blood_pressure_and_unit_option(tmp_path: Path) -> None:
    rows = [
        {"timestamp": _stamp(i), "systolic": str(16 + i % 2 * 0.2), "diastolic": "10.6"}
        for i in range(20)
    ]
    rows.append({"timestamp": _stamp(20), "systolic": "28", "diastolic": "16.7"})
    source = _write(tmp_path / "bp.csv", rows)
    target = tmp_path / "out.csv"
    args = ["replay", "--metric", "blood_pressure", "--input", str(source)]
    result = CliRunner().invoke(app, [*args, "--output", str(target), "--unit", "kPa"])
    assert result.exit_code == 0, result.output
    assert [r["anomaly"] for r in _read(target)] == ["0"] * 20 + ["1"]


def test_replay_command_refuses_missing_columns_and_unknown_units(tmp_path: Path) -> None:
    source = _write(tmp_path / "r.csv", _rows([70.0]))
    target = tmp_path / "out.csv"
    args = ["replay", "--input", str(source), "--output", str(target)]
    result = CliRunner().invoke(app, [*args, "--metric", "blood_pressure"])
    assert result.exit_code == 2
    assert "systolic" in result.output and not target.exists()
    result = CliRunner().invoke(app, [*args, "--metric", "heart_rate", "--unit", "furlongs"])
    assert result.exit_code == 2 and "furlongs" in result.output
