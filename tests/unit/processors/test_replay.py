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
    flags = replay_rows(_rows([*NORMAL_HR, 100, 70]), metric=Metric.HEART_RATE)
    assert [f.anomaly for f in flags] == [False] * 20 + [True, False]
    spike = flags[20]
    assert (spike.detector, spike.severity, spike.channel) == (
        "deviation",
        "critical",
        "heart_rate",
    )
    assert spike.score == pytest.approx(7.5, abs=0.5)
    assert all(f == RowFlag() for i, f in enumerate(flags) if i != 20)


def test_rows_are_judged_in_time_order_and_returned_in_input_order() -> None:
    rows = _rows([*NORMAL_HR, 100])
    shuffled = [rows[20], *rows[:20]]  # the spike comes first in the file, last in time
    flags = replay_rows(shuffled, metric=Metric.HEART_RATE)
    assert [f.anomaly for f in flags] == [True] + [False] * 20


def test_activity_context_is_not_judged_against_the_resting_baseline() -> None:
    rows = _rows([*NORMAL_HR, 150, 150], context="rest")
    rows[20]["context"] = "activity"
    flags = replay_rows(rows, metric=Metric.HEART_RATE)
    assert not flags[20].anomaly
    assert flags[21].anomaly and flags[21].detector == "deviation"
    assert flags[21].severity == "critical"


def test_values_in_another_unit_are_converted_as_ingest_converts_them() -> None:
    normal = [97.9, 98.1, 98.0, 98.2, 97.8] * 4
    flags = replay_rows(_rows([*normal, 102.2]), metric=Metric.BODY_TEMPERATURE, unit="[degF]")
    assert flags[-1].anomaly and flags[-1].channel == "body_temperature"
    assert (flags[-1].detector, flags[-1].severity) == ("deviation", "critical")
    assert not any(f.anomaly or f.error for f in flags[:-1])
    as_celsius = replay_rows(_rows(normal), metric=Metric.BODY_TEMPERATURE)
    assert all("outside the possible range" in f.error for f in as_celsius)


def test_rows_ingest_would_reject_get_an_error_and_do_not_stop_the_others() -> None:
    rows = _rows([*NORMAL_HR, 999, 100])
    rows.insert(3, {"timestamp": "yesterday", "value": "70"})
    rows.append({"timestamp": _stamp(40), "value": ""})
    rows.append(dict(rows[0]))
    flags = replay_rows(rows, metric=Metric.HEART_RATE)
    assert "not an ISO 8601 time" in flags[3].error
    assert "outside the possible range" in flags[21].error
    assert flags[22].anomaly and flags[22].detector == "deviation"
    assert flags[23].error == "value is missing"
    assert flags[24].error == "repeats data row 1"
    assert [i for i, f in enumerate(flags) if f.error] == [3, 21, 23, 24]


def test_naive_timestamps_are_utc_and_offsets_are_honoured() -> None:
    rows = [
        {"timestamp": f"2026-11-25T08:{i:02d}:00", "value": str(v)} for i, v in enumerate(NORMAL_HR)
    ]
    rows.append({"timestamp": "2026-11-25T09:10:30+01:00", "value": "100"})  # 08:10:30 UTC
    rows.append({"timestamp": "2026-11-25T08:30:00", "value": "100"})
    flags = replay_rows(rows, metric=Metric.HEART_RATE)
    assert [f.anomaly for f in flags] == [False] * 21 + [True]  # the first came in warm-up


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
    source = _write(tmp_path / "readings.csv", _rows([*NORMAL_HR, 100], context="rest"))
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
    assert [r["anomaly"] for r in rows] == ["0"] * 20 + ["1"]
    assert (rows[20]["detector"], rows[20]["severity"]) == ("deviation", "critical")
    assert rows[20]["value"] == "100" and rows[20]["context"] == "rest"
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
