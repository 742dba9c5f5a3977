"""``pghd replay`` of one metric with the ``steps`` and ``sleep`` companion columns: they
become interval readings (steps, sleep sessions) judged in the same stream as the rows."""

from __future__ import annotations

import csv
import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pghd.catalogue import Metric
from pghd.cli import app
from pghd.contracts import Anomaly, Measurement, Severity
from processors import replay as replay_module
from processors.judging import Outcome, judge
from processors.replay import RowReading, replay_rows, rows_to_readings

EVENING = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)
EVERY = timedelta(minutes=5)
ROWS = 132  # 21:00 to 07:55, one row every 5 minutes
ASLEEP = range(24, 114)  # 23:00 to 06:25; the first row awake again is 06:30
WALK = range(6, 10)  # 21:30 to 21:45, an evening walk


def _at(i: int) -> datetime:
    return EVENING + EVERY * i


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _night(seed: int = 7) -> list[dict[str, str]]:
    """A watch's evening and night as exported: heart rate, steps per 5 minutes, asleep 0/1."""
    rng = random.Random(seed)
    rows = []
    for i in range(ROWS):
        if i in ASLEEP:
            heart, steps, asleep = rng.randint(52, 58), 0, "1"
        elif i in WALK:
            heart, steps, asleep = rng.randint(96, 108), rng.randint(600, 900), "0"
        else:
            heart, steps, asleep = rng.randint(64, 74), rng.randint(0, 80), "0"
        rows.append(
            {"timestamp": _iso(_at(i)), "value": str(heart), "steps": str(steps), "sleep": asleep}
        )
    return rows


def _companions(items: Sequence[RowReading], metric: Metric) -> list[Measurement]:
    return [item.reading for item in items if item.reading.metric is metric]


def _position(items: Sequence[RowReading], row: int) -> int:
    return next(k for k, item in enumerate(items) if item.rows == (row,))


def test_each_steps_cell_becomes_a_reading_over_the_interval_since_the_row_before() -> None:
    rows = _night()
    parsed = rows_to_readings(rows, metric=Metric.HEART_RATE, patient_id="p-7")
    steps = _companions(parsed.readings, Metric.STEPS)
    assert len(steps) == ROWS
    by_end = {m.effective_end: m for m in steps}
    for i, row in enumerate(rows):
        m = by_end[_at(i)]
        assert m.effective_time == _at(i - 1)  # the first: its time minus the 5-min spacing
        assert m.value == float(row["steps"])
        assert (m.unit, m.patient_id, m.context) == ("{steps}", "p-7", None)
    assert all(m.event_id.startswith("d-") for m in steps)  # derived, as ingest derives them
    assert len({m.event_id for m in steps}) == ROWS
    assert [item.rows for item in parsed.readings if item.reading.metric is Metric.STEPS] == [
        ()
    ] * ROWS
    hearts = [item for item in parsed.readings if item.reading.metric is Metric.HEART_RATE]
    assert sorted(item.rows for item in hearts) == [(i,) for i in range(ROWS)]
    assert not parsed.errors and not parsed.notes


def test_steps_intervals_follow_time_not_file_order_and_the_first_takes_the_median_spacing() -> (
    None
):
    # a 10-minute gap first, then 5-minute rows: the median spacing is 5 minutes
    minutes = [0, 10, 15, 20, 25]
    rows = [
        {"timestamp": _iso(EVENING + timedelta(minutes=m)), "value": "70", "steps": str(s)}
        for m, s in zip(minutes, [35, 420, 610, "", 0], strict=True)
    ]
    rows.reverse()
    steps = _companions(rows_to_readings(rows, metric=Metric.HEART_RATE).readings, Metric.STEPS)
    spans = [
        (m.effective_time - EVENING, m.effective_end - EVENING, m.value)
        for m in steps
        if m.effective_end is not None
    ]
    minute = timedelta(minutes=1)
    assert sorted(spans) == [
        (-5 * minute, 0 * minute, 35),
        (0 * minute, 10 * minute, 420),
        (10 * minute, 15 * minute, 610),
        (20 * minute, 25 * minute, 0),  # the empty cell at 20 min is no reading; 0 steps is one
    ]


def test_each_run_of_sleep_rows_becomes_one_session_to_the_next_row() -> None:
    rows = _night()
    for row in rows[-4:]:  # dozing off again at 07:40 until the export ends at 07:55
        row["sleep"] = "1"
    parsed = rows_to_readings(rows, metric=Metric.HEART_RATE, patient_id="p-7")
    sessions = _companions(parsed.readings, Metric.SLEEP_DURATION)
    assert [(m.effective_time, m.effective_end, m.value) for m in sessions] == [
        (_at(24), _at(114), 7.5),  # 23:00 to the first row awake, 06:30
        (_at(128), _at(131) + EVERY, pytest.approx(0.3333)),  # the last row plus the spacing
    ]
    assert {(m.unit, m.patient_id) for m in sessions} == {("h", "p-7")}
    assert [i.rows for i in parsed.readings if i.reading.metric is Metric.SLEEP_DURATION] == [
        (),
        (),
    ]
    assert not parsed.notes


def test_a_sleep_cell_other_than_0_or_1_is_noted_and_ends_the_run() -> None:
    rows = _night()
    rows[60]["sleep"] = "asleep"  # 02:00
    parsed = rows_to_readings(rows, metric=Metric.HEART_RATE)
    sessions = _companions(parsed.readings, Metric.SLEEP_DURATION)
    assert [(m.effective_time, m.effective_end) for m in sessions] == [
        (_at(24), _at(60)),
        (_at(61), _at(114)),
    ]
    assert parsed.notes == {60: ["sleep must be 0 or 1, not 'asleep' (taken as 0)"]}


def test_companions_come_in_the_stream_at_their_end_before_the_row_there() -> None:
    parsed = rows_to_readings(_night(), metric=Metric.HEART_RATE)
    arrivals = [r.reading.effective_end or r.reading.effective_time for r in parsed.readings]
    assert arrivals == sorted(arrivals)
    for i in range(ROWS):
        before = parsed.readings[_position(parsed.readings, i) - 1].reading
        assert (before.metric, before.effective_end) == (Metric.STEPS, _at(i)) or (
            before.metric is Metric.SLEEP_DURATION and i == 114
        )
    session = next(
        k for k, r in enumerate(parsed.readings) if r.reading.metric is Metric.SLEEP_DURATION
    )
    # sent when the patient woke: after every row of the night, before the first row awake
    assert _position(parsed.readings, 113) < session < _position(parsed.readings, 114)


def test_replay_feeds_every_companion_to_the_judging_one_reading_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[Measurement, datetime, int, int]] = []

    def spy(states: Mapping[str, Any], readings: Sequence[Measurement], **kw: Any) -> Outcome:
        calls.append((readings[0], kw["now"], len(readings), len(states)))
        return judge(states, readings, **kw)

    monkeypatch.setattr(replay_module, "judge", spy)
    rows = [{**row, "context": "rest"} for row in _night()]
    replay_rows(rows, metric=Metric.HEART_RATE)
    expected = rows_to_readings(rows, metric=Metric.HEART_RATE).readings
    assert [reading for reading, *_ in calls] == [item.reading for item in expected]
    assert len(calls) == 2 * ROWS + 1  # each row, its steps, one night's sleep
    assert {n for _, _, n, _ in calls} == {1}
    assert all(now == (m.effective_end or m.effective_time) for m, now, _, _ in calls)
    assert calls[-1][3] > 0  # the baselines the earlier readings left are carried


def test_a_companion_reading_s_findings_are_not_reported_on_any_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def alarmed(states: Mapping[str, Any], readings: Sequence[Measurement], **kw: Any) -> Outcome:
        result = judge(states, readings, **kw)
        reading = readings[0]
        if reading.metric is Metric.HEART_RATE:
            return result
        anomaly = Anomaly(
            anomaly_id=f"a-{reading.event_id}",
            patient_id=reading.patient_id,
            metric=reading.metric,
            channel=reading.metric.value,
            detector="deviation",
            severity=Severity.CRITICAL,
            score=9.0,
            value=reading.value or 0.0,
            unit=reading.unit,
            observed_at=reading.effective_time,
            detected_at=kw["now"],
            explanation="invented for the test",
            event_ids=[reading.event_id],
        )
        result.raw = [anomaly]
        result.anomalies = [anomaly]
        return result

    monkeypatch.setattr(replay_module, "judge", alarmed)
    flags = replay_rows(_night(), metric=Metric.HEART_RATE)
    assert len(flags) == ROWS
    assert not any(f.anomaly or f.error or f.note for f in flags)


def _watch_off_for_a_day_and_more() -> list[dict[str, str]]:
    """An evening at rest, the watch off for 30 h, then a reading at 135 /min."""
    rows = [{**row, "context": "rest"} for row in _night()[:20]]
    back = _at(19) + timedelta(hours=30)
    rows.append({"timestamp": _iso(back), "value": "135", "steps": "840", "context": "rest"})
    return rows


def test_a_steps_interval_over_26_hours_is_an_error_on_its_row_whose_value_is_judged() -> None:
    rows = _watch_off_for_a_day_and_more()
    parsed = rows_to_readings(rows, metric=Metric.HEART_RATE)
    assert len(_companions(parsed.readings, Metric.STEPS)) == 20  # not the one over 30 h
    assert parsed.notes == {
        20: [
            "steps not replayed (2026-11-25T22:35:00Z to 2026-11-27T04:35:00Z): effective_end:"
            " an interval may span at most 26 hours"
        ]
    }
    # A lone score-3 pulse is held back (a possible motion artefact) until the next reading
    # repeats it: that the next 135 is critical shows row 20's value was judged.
    after = _at(19) + timedelta(hours=30, minutes=5)
    rows.append({"timestamp": _iso(after), "value": "135", "steps": "0", "context": "rest"})
    flags = replay_rows(rows, metric=Metric.HEART_RATE)
    assert (flags[20].anomaly, flags[20].error) == (False, "")
    assert "at most 26 hours" in flags[20].note and "at most 26 hours" in flags[20].problems
    assert (flags[21].anomaly, flags[21].severity, flags[21].error) == (True, "critical", "")
    assert not any(f.note or f.error for i, f in enumerate(flags) if i != 20)


def test_a_steps_cell_ingest_would_refuse_or_without_an_interval_is_noted() -> None:
    rows = _night()[:3]
    rows[1]["steps"] = "-40"
    rows[2]["steps"] = "lots"
    flags = replay_rows(rows, metric=Metric.HEART_RATE)
    assert "outside the possible range 0 to 100000" in flags[1].note
    assert "valid number" in flags[2].note
    assert not any(f.error for f in flags)
    alone = replay_rows([_night()[0]], metric=Metric.HEART_RATE)  # no spacing to go by
    assert alone[0].note.startswith("steps not replayed: the interval has no start")
    assert alone[0].error == ""


def test_a_companion_column_of_the_metric_itself_is_refused() -> None:
    rows = [{"timestamp": _iso(_at(0)), "value": "420", "steps": "420"}]
    with pytest.raises(ValueError, match="companion"):
        replay_rows(rows, metric=Metric.STEPS)
    rows = [{"timestamp": _iso(_at(0)), "value": "7.5", "sleep": "1"}]
    with pytest.raises(ValueError, match="companion"):
        rows_to_readings(rows, metric=Metric.SLEEP_DURATION)


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _said(output: str) -> str:
    """The command's output with the error box and line wrapping taken out."""
    return " ".join(output.replace("│", " ").split())


def test_replay_command_takes_steps_and_sleep_columns(tmp_path: Path) -> None:
    back = _iso(_at(ROWS - 1) + timedelta(hours=30))  # the watch off for 30 h after the night
    rows = [*_night(), {"timestamp": back, "value": "135", "steps": "840", "sleep": "0"}]
    source = _write(tmp_path / "night.csv", rows)
    target = tmp_path / "flags.csv"
    args = ["replay", "--metric", "heart_rate", "--input", str(source), "--output", str(target)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = list(csv.DictReader(target.open(newline="")))
    assert len(out) == ROWS + 1
    assert list(out[0]) == [
        "timestamp",
        "value",
        "steps",
        "sleep",
        "score",
        "anomaly",
        "detector",
        "severity",
        "channel",
        "error",
    ]
    assert [(r["steps"], r["sleep"]) for r in out] == [(r["steps"], r["sleep"]) for r in rows]
    last = out[-1]
    assert "an interval may span at most 26 hours" in last["error"]
    assert last["anomaly"] in {"0", "1"} and last["score"] != ""  # judged all the same
    assert all(r["error"] == "" and r["anomaly"] in {"0", "1"} for r in out[:-1])
    assert f"{ROWS + 1} rows written" in result.stdout
    assert "1 rows with steps/sleep not replayed" in result.output


def test_replay_command_refuses_a_companion_column_of_the_metric_itself(tmp_path: Path) -> None:
    source = _write(tmp_path / "steps.csv", [{"timestamp": _iso(_at(0)), "value": "420"}])
    source.write_text("timestamp,value,steps\n2026-11-25T21:00:00Z,420,420\n")
    target = tmp_path / "out.csv"
    args = ["replay", "--metric", "steps", "--input", str(source), "--output", str(target)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and not target.exists()
    assert "the companion that adds steps readings to another metric" in _said(result.output)


def test_a_one_metric_csv_of_an_interval_metric_may_give_each_row_its_end() -> None:
    rows = [
        {"timestamp": _iso(_at(12 * h)), "value": str(v), "end": _iso(_at(12 * h + 12))}
        for h, v in enumerate([1240, 310, 0])
    ]
    rows.append({"timestamp": _iso(_at(40)), "value": "90", "end": _iso(_at(40))})
    parsed = rows_to_readings(rows, metric=Metric.STEPS)
    assert [
        (r.rows, r.reading.effective_time, r.reading.effective_end) for r in parsed.readings
    ] == [((h,), _at(12 * h), _at(12 * h + 12)) for h in range(3)]
    assert "effective_end must be after effective_time" in parsed.errors[3]
