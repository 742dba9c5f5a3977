"""``pghd replay`` of a long CSV (``timestamp,metric,value[,unit]``, one row per reading of
any metric), blood-pressure pairing, and telling the two CSV shapes apart."""

from __future__ import annotations

import csv
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pghd.catalogue import Metric
from pghd.cli import app
from processors.replay import long_rows_to_readings, replay_rows

DAY0 = datetime(2026, 11, 16, tzinfo=UTC)
COLUMNS = ["timestamp", "metric", "value", "unit", "end"]
DAYS = 10
SPIKE = DAY0 + timedelta(days=DAYS, hours=7, minutes=30)  # a hypertensive crisis: 212/126


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _row(
    when: datetime, metric: str, value: object, unit: str = "", end: str = ""
) -> dict[str, str]:
    return {
        "timestamp": _iso(when),
        "metric": metric,
        "value": str(value),
        "unit": unit,
        "end": end,
    }


def _export(seed: int = 3) -> list[dict[str, str]]:
    """Ten days of a patient's export grouped by type, as Apple Health writes it: every
    systolic record, then every diastolic one (cuff readings at 07:30 and 19:30), then
    heart rates, hourly steps and each night's sleep."""
    rng = random.Random(seed)
    cuff = [DAY0 + timedelta(days=d, hours=h, minutes=30) for d in range(DAYS) for h in (7, 19)]
    systolic = [_row(t, "blood_pressure.systolic", rng.randint(116, 126), "mmHg") for t in cuff]
    diastolic = [_row(t, "blood_pressure.diastolic", rng.randint(74, 82), "mmHg") for t in cuff]
    systolic.append(_row(SPIKE, "blood_pressure.systolic", 212, "mmHg"))
    diastolic.append(_row(SPIKE, "blood_pressure.diastolic", 126, "mmHg"))
    hearts: list[dict[str, str]] = []
    steps: list[dict[str, str]] = []
    sleep: list[dict[str, str]] = []
    for d in range(DAYS):
        for h in range(8, 22):
            start = DAY0 + timedelta(days=d, hours=h)
            hearts.append(
                _row(start + timedelta(minutes=40), "heart_rate", rng.randint(62, 76), "bpm")
            )
            steps.append(
                _row(start, "steps", rng.randint(150, 1400), end=_iso(start + timedelta(hours=1)))
            )
        night = DAY0 + timedelta(days=d, hours=23, minutes=rng.randint(0, 40))
        wake = night + timedelta(hours=7, minutes=rng.randint(0, 50))
        hours = round((wake - night).total_seconds() / 3600 - 0.4, 2)  # awake a while in bed
        sleep.append(_row(night, "sleep_duration", hours, "h", _iso(wake)))
    return [*systolic, *diastolic, *hearts, *steps, *sleep]


def test_systolic_and_diastolic_rows_at_the_same_time_pair_into_one_reading() -> None:
    rows = _export()
    parsed = long_rows_to_readings(rows, patient_id="p-3")
    assert not parsed.errors
    pairs = [item for item in parsed.readings if item.reading.metric is Metric.BLOOD_PRESSURE]
    assert len(pairs) == 21
    for item in pairs:
        s, d = item.rows
        assert rows[s]["metric"] == "blood_pressure.systolic"
        assert rows[d]["metric"] == "blood_pressure.diastolic"
        assert rows[s]["timestamp"] == rows[d]["timestamp"]
        assert item.reading.components == {
            "systolic": float(rows[s]["value"]),
            "diastolic": float(rows[d]["value"]),
        }
        assert item.reading.value is None and item.reading.patient_id == "p-3"
    assert len(parsed.readings) == len(rows) - 21  # every other row is a reading of its own


def test_a_long_csv_is_judged_whole_and_every_row_gets_its_flags() -> None:
    rows = _export()
    flags = replay_rows(rows, metric=None)
    assert len(flags) == len(rows)
    assert not any(f.error or f.note for f in flags)
    flagged = {(rows[i]["metric"], rows[i]["value"]) for i, f in enumerate(flags) if f.anomaly}
    assert {("blood_pressure.systolic", "212"), ("blood_pressure.diastolic", "126")} <= flagged
    spike = [flags[i] for i, r in enumerate(rows) if r["timestamp"] == _iso(SPIKE)]
    assert len(spike) == 2 and spike[0] == spike[1]  # both rows of the pair: its verdict
    assert spike[0].severity == "critical"
    assert spike[0].channel.startswith("blood_pressure.")
    steps = [flags[i] for i, r in enumerate(rows) if r["metric"] == "steps"]
    assert not any(f.anomaly for f in steps)  # steps are never judged against a baseline


def test_an_unpaired_blood_pressure_row_gets_an_error_and_the_rest_are_judged() -> None:
    rows = _export()
    lonely = next(i for i, r in enumerate(rows) if r["metric"] == "blood_pressure.diastolic")
    gone = rows.pop(lonely)
    rows.append(_row(DAY0 + timedelta(days=3, hours=12), "blood_pressure.diastolic", 80, "mmHg"))
    flags = replay_rows(rows, metric=None)
    systolic = next(i for i, r in enumerate(rows) if r["timestamp"] == gone["timestamp"])
    assert flags[systolic].error == (
        f"blood_pressure.systolic at {gone['timestamp']} has no blood_pressure.diastolic"
        " row at the same timestamp to pair with"
    )
    assert flags[-1].error == (
        "blood_pressure.diastolic at 2026-11-19T12:00:00Z has no blood_pressure.systolic"
        " row at the same timestamp to pair with"
    )
    assert [i for i, f in enumerate(flags) if f.error] == [systolic, len(rows) - 1]
    assert sum(f.anomaly for f in flags) >= 2  # the spike pair is still judged


def test_a_pair_in_two_units_and_rows_that_are_no_reading_get_errors() -> None:
    t = _iso(DAY0 + timedelta(hours=7, minutes=30))
    rows = [
        {"timestamp": t, "metric": "blood_pressure.systolic", "value": "16.4", "unit": "kPa"},
        {"timestamp": t, "metric": "blood_pressure.diastolic", "value": "80", "unit": "mmHg"},
        {"timestamp": t, "metric": "blood_pressure", "value": "120", "unit": "mmHg"},
        {"timestamp": t, "metric": "vo2_max", "value": "41", "unit": "mL/(kg.min)"},
        {"timestamp": t, "metric": "heart_rate", "value": "68", "unit": "bpm"},
    ]
    at_noon = {"timestamp": _iso(DAY0 + timedelta(hours=12)), "unit": "mmHg"}
    rows.append({**at_noon, "metric": "blood_pressure.systolic", "value": "121", "context": "rest"})
    rows.append(
        {**at_noon, "metric": "blood_pressure.diastolic", "value": "79", "context": "activity"}
    )
    flags = replay_rows(rows, metric=None)
    assert (
        flags[0].error
        == flags[1].error
        == ("the systolic and diastolic rows differ in unit (kPa, mmHg)")
    )
    assert flags[2].error == (
        "blood_pressure takes two rows: blood_pressure.systolic and blood_pressure.diastolic"
        " at the same timestamp"
    )
    assert flags[3].error.startswith("metric 'vo2_max' is not in the catalogue; use one of:")
    assert flags[4].error == ""
    assert (
        flags[5].error
        == flags[6].error
        == ("the systolic and diastolic rows differ in context ('rest', 'activity')")
    )


def test_units_are_converted_per_row_and_an_interval_is_fed_at_its_end() -> None:
    morning = DAY0 + timedelta(hours=8)
    rows = [
        _row(morning, "steps", 412, "steps", _iso(morning + timedelta(minutes=15))),
        _row(morning + timedelta(minutes=10), "heart_rate", 74, "bpm"),
        _row(morning + timedelta(minutes=15), "heart_rate", 71),
        _row(morning, "body_temperature", 98.6, "[degF]"),
    ]
    parsed = long_rows_to_readings(rows)
    order = [(item.rows, item.reading.metric.value, item.reading.value) for item in parsed.readings]
    assert order == [
        ((3,), "body_temperature", 37.0),
        ((1,), "heart_rate", 74.0),
        ((0,), "steps", 412.0),  # sent at 08:15, once counted: before the heart rate then
        ((2,), "heart_rate", 71.0),
    ]
    steps = parsed.readings[2].reading
    assert (steps.effective_time, steps.effective_end) == (morning, morning + timedelta(minutes=15))


@pytest.mark.parametrize(
    ("end", "message"),
    [
        ("2026-11-16T08:00:00Z", "effective_end must be after effective_time"),
        ("2026-11-16T07:55:00Z", "effective_end must be after effective_time"),
        ("2026-11-17T10:01:00Z", "an interval may span at most 26 hours"),
        ("soon", "end 'soon' is not an ISO 8601 time"),
    ],
)
def test_an_interval_that_is_not_positive_or_too_long_is_an_error(end: str, message: str) -> None:
    rows = [_row(DAY0 + timedelta(hours=8), "steps", 412, end=end)]
    flags = replay_rows(rows, metric=None)
    assert message in flags[0].error


def test_companion_columns_and_a_unit_do_not_go_with_a_long_csv() -> None:
    rows = [{**_row(DAY0, "heart_rate", 70), "steps": "12"}]
    with pytest.raises(ValueError, match="not as steps/sleep columns"):
        replay_rows(rows, metric=None)
    with pytest.raises(ValueError, match="unit column"):
        replay_rows([_row(DAY0, "heart_rate", 70)], metric=None, unit="bpm")


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _said(output: str) -> str:
    """The command's output with the error box and line wrapping taken out."""
    return " ".join(output.replace("│", " ").split())


def test_replay_command_tells_a_long_csv_by_its_metric_column(tmp_path: Path) -> None:
    rows = _export()
    source = _write(tmp_path / "export.csv", rows)
    target = tmp_path / "flags.csv"
    result = CliRunner().invoke(app, ["replay", "--input", str(source), "--output", str(target)])
    assert result.exit_code == 0, result.output
    out = list(csv.DictReader(target.open(newline="")))
    assert list(out[0]) == [
        *COLUMNS,
        "score",
        "anomaly",
        "detector",
        "severity",
        "channel",
        "error",
    ]
    assert [(r["metric"], r["value"]) for r in out] == [(r["metric"], r["value"]) for r in rows]
    spike = [r for r in out if r["timestamp"] == _iso(SPIKE)]
    assert [(r["anomaly"], r["severity"]) for r in spike] == [("1", "critical")] * 2
    assert all(r["error"] == "" and r["anomaly"] in {"0", "1"} for r in out)
    assert f"{len(rows)} rows written" in result.stdout


def test_replay_command_refuses_options_and_columns_that_do_not_fit(tmp_path: Path) -> None:
    long = _write(tmp_path / "long.csv", [_row(DAY0, "heart_rate", 70)])
    wide = _write(tmp_path / "wide.csv", [{"timestamp": _iso(DAY0), "value": "70"}])
    both = _write(tmp_path / "both.csv", [{**_row(DAY0, "heart_rate", 70), "sleep": "0"}])
    target = tmp_path / "out.csv"

    def run(source: Path, *extra: str) -> tuple[int, str]:
        args = ["replay", "--input", str(source), "--output", str(target), *extra]
        result = CliRunner().invoke(app, args)
        return result.exit_code, _said(result.output)

    code, said = run(long, "--metric", "heart_rate")
    assert code == 2 and "is a long CSV (its metric column names each row's metric)" in said
    assert "leave out --metric" in said
    code, said = run(long, "--unit", "bpm")
    assert code == 2 and "leave out --unit" in said
    code, said = run(wide)
    assert code == 2 and "has no metric column, so it is a CSV of one metric" in said
    assert "name it with --metric" in said
    code, said = run(both)
    assert code == 2 and "long CSV with sleep column(s)" in said
    long.write_text("timestamp,metric,unit\n2026-11-16T00:00:00Z,heart_rate,bpm\n")
    code, said = run(long)
    assert code == 2 and "lacks column(s) value; a long CSV needs timestamp,metric,value" in said
    assert not target.exists()
