"""Processor settings: defaults, environment names and the topic spec."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pghd import topics
from processors.settings import ProcessorSettings

SPEC = Path(__file__).parents[3] / "deploy" / "topics.json"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("PGHD_"):
            monkeypatch.delenv(name)


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHD_PROCESSORS_INFLUX_TOKEN", "u:p")
    s = ProcessorSettings()
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.influx_bucket == "pghd/autogen" and s.influx_org == "-"
    assert s.influx_token.get_secret_value() == "u:p"
    assert (s.warmup, s.z_warning, s.z_critical) == (20, 4.0, 6.0)
    assert (s.batch_size, s.batch_within_s, s.web_port, s.web_host) == (
        2000,
        0.02,
        6066,
        "127.0.0.1",
    )
    assert s.store == "memory://"
    params = s.judge_params()
    assert params.baseline.warmup == 20 and params.z_critical == 6.0


def test_token_is_required() -> None:
    with pytest.raises(ValidationError):
        ProcessorSettings()


def test_shared_variables_are_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHD_INFLUX_TOKEN", "shared:token")
    monkeypatch.setenv("PGHD_KAFKA_BOOTSTRAP", "shared:9092")
    monkeypatch.setenv("PGHD_INFLUX_URL", "http://shared:8086")
    s = ProcessorSettings()
    assert s.kafka_bootstrap == "shared:9092" and s.influx_url == "http://shared:8086"
    monkeypatch.setenv("PGHD_PROCESSORS_KAFKA_BOOTSTRAP", "mine:9092")
    monkeypatch.setenv("PGHD_PROCESSORS_WARMUP", "30")
    s = ProcessorSettings()
    assert s.kafka_bootstrap == "mine:9092" and s.warmup == 30


def test_partitions_match_the_measurements_topic_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHD_INFLUX_TOKEN", "t")
    spec = {t.name: t.partitions for t in topics.load_spec(SPEC)}
    assert ProcessorSettings().topic_partitions == spec[topics.MEASUREMENTS]


def test_detector_parameters_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHD_PROCESSORS_INFLUX_TOKEN", "u:p")
    monkeypatch.setenv("PGHD_PROCESSORS_CUSUM_H", "10")
    monkeypatch.setenv("PGHD_PROCESSORS_OVERNIGHT_NIGHTS", "3")
    monkeypatch.setenv("PGHD_PROCESSORS_TAU_DAYS", "14")
    params = ProcessorSettings().judge_params()
    assert (params.cusum_h, params.overnight_nights, params.baseline.tau_days) == (10.0, 3, 14.0)
    assert (params.persist_needed, params.persist_window, params.gap_hours) == (2, 3, 48.0)
