"""pghd.faust_app: every worker's app is built the same way, with the #596 fix applied."""

from __future__ import annotations

import pytest

from alerts.app import build_app as build_alerts
from alerts.settings import AlertsSettings
from pghd import faust_app, faust_fixes
from processors.app import build_app as build_processors
from processors.settings import ProcessorSettings


def _calls_to_apply(monkeypatch: pytest.MonkeyPatch) -> list[None]:
    calls: list[None] = []
    monkeypatch.setattr(faust_fixes, "apply", lambda: calls.append(None))
    return calls


def test_brokers_of_a_bootstrap_list() -> None:
    assert faust_app.brokers("a:9092, b:9093,") == ["kafka://a:9092", "kafka://b:9093"]


def test_the_alerts_worker_gets_the_fix_and_the_shared_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _calls_to_apply(monkeypatch)
    settings = AlertsSettings(app_id="alerts-x", kafka_bootstrap="h1:1,h2:2", web_port=6111)
    app, alerts = build_alerts(settings)
    assert calls == [None]
    conf = app.conf
    assert conf.id == "alerts-x" and [str(u) for u in conf.broker] == [
        "kafka://h1:1",
        "kafka://h2:2",
    ]
    assert conf.producer_acks == -1 and conf.consumer_auto_offset_reset == "earliest"
    assert conf.web_port == 6111 and conf.web_bind == settings.web_host
    assert alerts.alert_state.name == "alert_state"
    assert "alerts.agents.alert_on_inputs" in app.agents


def test_the_processors_worker_keeps_its_own_options(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _calls_to_apply(monkeypatch)
    settings = ProcessorSettings(  # type: ignore[call-arg]
        app_id="proc-x", influx_token="t", commit_interval_s=0.5
    )
    app, processors = build_processors(settings)
    assert calls == [None]
    assert app.conf.broker_commit_interval == 0.5 and app.conf.stream_wait_empty
    assert app.conf.producer_acks == -1
    assert processors.settings is settings
