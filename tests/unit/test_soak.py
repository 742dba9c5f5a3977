"""The soak's fault schedule and its verdicts (bench/soak.py)."""

from __future__ import annotations

from bench.soak import Tally, _patients_named, schedule


def test_every_fault_happens_once_inside_the_run_in_order() -> None:
    faults = schedule(1800.0)
    assert [f.name.split(" (")[0] for f in faults] == [
        "influxdb frozen",
        "processors worker killed",
        "alerts worker killed",
        "kafka broker killed",
        "influxdb stopped",
    ]
    times = [f.at_s for f in faults]
    assert times == sorted(times) and times[0] > 0
    assert all(f.at_s + f.duration_s < 1800.0 for f in faults)
    assert faults[0].duration_s == 72.0  # InfluxDB away 4 % of a 30-minute run


def test_short_runs_keep_outages_long_enough_to_hit_retries() -> None:
    assert schedule(180.0)[0].duration_s == 30.0


def test_a_run_passes_only_when_every_count_matches() -> None:
    good = Tally(
        accepted=100, stored=100, anomalies_expected=5, anomalies_emitted=5, patients_paged=5
    )
    assert all(good.verdicts().values())
    assert "ok   accepted = stored" in good.table()
    lost = Tally(
        accepted=100, stored=99, anomalies_expected=5, anomalies_emitted=5, patients_paged=5
    )
    assert lost.verdicts()["accepted = stored"] is False
    assert "FAIL accepted = stored" in lost.table()
    twice = Tally(
        anomalies_expected=2, anomalies_emitted=2, patients_paged=2, patients_paged_twice=1
    )
    assert twice.verdicts()["notifications duplicated = 0"] is False


def test_pages_are_attributed_to_whole_patient_ids_not_prefixes() -> None:
    text = "SpO2 85 % for soak-7-desat-00001; see also soak-7-desat-00010 (soak-8-desat-00002)"
    assert _patients_named(text, "7") == {"soak-7-desat-00001", "soak-7-desat-00010"}
