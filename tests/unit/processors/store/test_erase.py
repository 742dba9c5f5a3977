"""The InfluxDB eraser's pure parts: which buckets, which queries, reading the count."""

from __future__ import annotations

import pytest

from processors.store.erase import (
    _sum_csv,
    buckets_to_erase,
    count_flux,
    drop_series_influxql,
)


def test_the_downsampled_bucket_of_each_version_is_erased_too() -> None:
    assert buckets_to_erase("pghd/autogen") == ["pghd/autogen", "pghd/downsampled"]
    assert buckets_to_erase("pghd", ["archive", "pghd"]) == ["pghd", "pghd_downsampled", "archive"]


def test_queries_name_the_patient_and_refuse_anything_that_is_not_an_id() -> None:
    assert 'r.patient_id == "p-1"' in count_flux("pghd", "p-1")
    assert drop_series_influxql("p-1") == "DROP SERIES WHERE \"patient_id\" = 'p-1'"
    for hostile in ('p" or true or "', "p' OR 1=1", "p\\"):
        with pytest.raises(ValueError):
            count_flux("pghd", hostile)
        with pytest.raises(ValueError):
            drop_series_influxql(hostile)


def test_the_count_sums_every_table_of_the_csv_answer() -> None:
    answer = "#datatype,string,long,long\n,result,table,_value\n,,0,7\n,,1,5\n\n"
    assert _sum_csv(answer) == 12
    assert _sum_csv("") == 0


def test_the_count_reaches_past_now_for_readings_dated_ahead_of_the_clock() -> None:
    assert "stop: 2262-04-11T00:00:00Z" in count_flux("pghd", "p-1")
