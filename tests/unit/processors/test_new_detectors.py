"""Persistence, CUSUM, overnight resting rate, data gaps, NEWS2 confirmation, glucose falls."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pghd.catalogue import Metric, channel_spec
from pghd.contracts import Severity
from processors.baseline import BaselineParams, BaselineState
from processors.detectors.cusum import cusum
from processors.detectors.deviation import assess
from processors.detectors.gaps import data_gap, gap_length
from processors.detectors.glycaemia import glucose_fall
from processors.detectors.news2 import news2, news2_score
from processors.detectors.overnight import ordinal, overnight
from processors.detectors.pipeline import JudgeParams

from .conftest import T0

PARAMS = BaselineParams(warmup=20)
READY = BaselineState(n=30, mean=70.0, spread=5.0)
HR = channel_spec(Metric.HEART_RATE, "heart_rate")
SPO2 = channel_spec(Metric.SPO2, "spo2")
SYS = channel_spec(Metric.BLOOD_PRESSURE, "systolic")


def judge(value: float, state: BaselineState = READY, **kwargs: object):
    return assess(
        value,
        state=state,
        spec=HR,
        unit="/min",
        params=PARAMS,
        z_warning=4.0,
        z_critical=6.0,
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_single_reading_at_four_to_six_spreads_is_remembered_not_reported() -> None:
    first = judge(92.0)
    assert first.finding is None and first.exceeded and first.hits == (1,)
    assert first.z == pytest.approx(4.4)


def test_a_warning_needs_two_of_the_last_three_readings() -> None:
    state = BaselineState(n=30, mean=70.0, spread=5.0, hits=(1, 0))
    second = judge(92.0, state)
    assert second.finding is not None and second.finding.severity is Severity.WARNING
    assert second.hits == (1, 0, 1)
    assert second.finding.clause == (
        "well above this patient's usual 70 /min (typical spread 5) for 2 of the last 3 readings"
    )
    stale = judge(92.0, BaselineState(n=30, mean=70.0, spread=5.0, hits=(1, 0, 0)))
    assert stale.finding is None and stale.hits == (0, 0, 1)  # the old hit left the window


def test_one_extreme_reading_is_critical_at_once() -> None:
    result = judge(101.0)
    assert result.finding is not None and result.finding.severity is Severity.CRITICAL
    assert result.finding.clause == "far above this patient's usual 70 /min (typical spread 5)"


def test_a_widened_spread_softens_the_verdict() -> None:
    assert judge(101.0, spread=7.5).finding is None  # 4.1 widened spreads, first hit only


def test_no_assessment_without_a_ready_baseline() -> None:
    result = judge(150.0, BaselineState(n=3, mean=70.0, spread=5.0))
    assert (result.finding, result.z, result.exceeded, result.hits) == (None, None, False, ())


def test_cusum_accumulates_small_residuals_and_clears_after_the_shift() -> None:
    state = READY
    signals = []
    for _ in range(10):  # a shift of two spreads: 1 per reading above the allowance
        step = cusum(2.0, state=state, spec=HR, unit="/min", k=1.0, h=8.0)
        state = BaselineState(n=30, mean=70.0, spread=5.0, cusum_hi=step.hi, cusum_lo=step.lo)
        signals.append(step.finding is not None)
    assert signals == [False] * 7 + [True] * 3
    assert state.cusum_hi == 8.0  # capped at h
    back = cusum(0.0, state=state, spec=HR, unit="/min", k=1.0, h=8.0)
    assert back.finding is None and back.hi == 7.0 and not back.signalling()


def test_cusum_ignores_noise_and_a_single_spike() -> None:
    hi = lo = 0.0
    for z in [0.5, -0.8, 1.2, -0.3, 0.9, 50.0, 0.1, -1.1, 0.7]:
        state = BaselineState(n=30, mean=70.0, spread=5.0, cusum_hi=hi, cusum_lo=lo)
        step = cusum(z, state=state, spec=HR, unit="/min", k=1.0, h=8.0)
        assert step.finding is None
        hi, lo = step.hi, step.lo
    assert hi < 8.0


def test_cusum_judges_only_the_side_that_matters() -> None:
    state = BaselineState(n=30, mean=97.0, spread=1.0, cusum_hi=7.5, cusum_lo=7.5)
    up = cusum(3.0, state=state, spec=SPO2, unit="%", k=1.0, h=8.0)
    assert up.finding is None and up.hi == 0.0
    down = cusum(-3.0, state=state, spec=SPO2, unit="%", k=1.0, h=8.0)
    assert down.finding is not None
    assert down.finding.clause == (
        "part of a sustained shift below this patient's usual 97 % over recent readings"
    )


def _night(value: float, state: BaselineState, day: int):
    return overnight(
        value,
        state=state,
        time=T0 + timedelta(days=day),
        unit="/min",
        params=PARAMS,
        z=2.0,
        min_delta=5.0,
        nights=2,
    )


def test_overnight_resting_rate_raised_two_nights_running_is_a_warning() -> None:
    base = BaselineState(n=30, mean=74.0, spread=2.0, last_time=T0)
    first = _night(80.0, base, 1)
    assert first.raised and first.streak == 1 and first.finding is None
    after_first = BaselineState(
        n=30, mean=74.0, spread=2.0, last_time=T0 + timedelta(days=1), streak=first.streak
    )
    second = _night(88.0, after_first, 2)
    assert second.finding is not None and second.finding.severity is Severity.WARNING
    assert second.finding.clause == (
        "14 /min above this patient's usual 74 /min for the 2nd night running"
    )


def test_overnight_streak_breaks_on_a_normal_night_or_a_missing_one() -> None:
    state = BaselineState(n=30, mean=74.0, spread=2.0, last_time=T0, streak=1)
    assert _night(76.0, state, 1).streak == 0  # +2 is below max(2 spreads, 5 /min)
    assert _night(84.0, state, 3).streak == 1  # three days later: a new streak
    assert _night(84.0, BaselineState(n=3, mean=74.0, spread=2.0), 1).streak == 0


def test_ordinals() -> None:
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
    ]  # fmt: skip


def test_a_long_silence_is_an_info_finding_only() -> None:
    after = timedelta(hours=48)
    assert data_gap(last_time=T0, time=T0 + timedelta(hours=47), after=after) is None
    assert data_gap(last_time=None, time=T0, after=after) is None
    gap = data_gap(last_time=T0, time=T0 + timedelta(days=3, hours=12), after=after)
    assert gap is not None and gap.severity is Severity.INFO and gap.detector == "data_gap"
    assert gap.clause == "the first reading after 3.5 days without data (a data gap)"
    assert gap_length(T0, T0 - timedelta(hours=1)) == timedelta(0)


def test_news2_score_two_is_info_until_confirmed() -> None:
    assert news2_score(95.0, spec=SYS) == 2
    unconfirmed = news2(95.0, spec=SYS, unit="mm[Hg]", confirmed=False)
    assert unconfirmed is not None and unconfirmed.severity is Severity.INFO
    assert "not far from this patient's usual level" in unconfirmed.clause
    confirmed = news2(95.0, spec=SYS, unit="mm[Hg]", confirmed=True)
    assert confirmed is not None and confirmed.severity is Severity.WARNING
    red_flag = news2(88.0, spec=SYS, unit="mm[Hg]", confirmed=False)
    assert red_flag is not None and red_flag.severity is Severity.CRITICAL


def test_a_fast_glucose_fall_is_a_warning() -> None:
    def fall(value: float, last: float | None, minutes: float):
        return glucose_fall(
            value,
            last_value=last,
            last_time=T0,
            time=T0 + timedelta(minutes=minutes),
            unit="mg/dL",
        )

    finding = fall(80.0, 110.0, 10)
    assert finding is not None and finding.severity is Severity.WARNING
    assert finding.clause == "falling fast (3 mg/dL a minute from 110)"
    assert fall(80.0, 110.0, 20) is None  # 1.5 a minute
    assert fall(105.0, 160.0, 10) is None  # still well above hypoglycaemia
    assert fall(80.0, 110.0, 90) is None  # too far apart to compare
    assert fall(80.0, None, 10) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"persist_needed": 4, "persist_window": 3},
        {"cusum_h": 0},
        {"overnight_nights": 0},
        {"gap_widen": 0.5},
        {"daily_warmup": 1},
        {"z_warning": 7.0},
    ],
)
def test_judge_params_are_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        JudgeParams(**kwargs)  # type: ignore[arg-type]


def test_daily_channels_warm_up_on_a_week() -> None:
    params = JudgeParams()
    daily = channel_spec(Metric.RESTING_HEART_RATE, "resting_heart_rate")
    assert params.learning(daily).warmup == 7
    sampled = channel_spec(Metric.HEART_RATE, "heart_rate")
    assert params.learning(sampled).warmup == params.baseline.warmup == 20
