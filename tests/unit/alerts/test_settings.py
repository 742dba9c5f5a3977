"""Alerts settings: prefix, the shared Kafka fallback, JSON list of URLs."""

from __future__ import annotations

import pytest

from alerts.settings import AlertsSettings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PGHD_KAFKA_BOOTSTRAP", "PGHD_ALERTS_KAFKA_BOOTSTRAP", "PGHD_ALERTS_NOTIFY_URLS"):
        monkeypatch.delenv(name, raising=False)
    settings = AlertsSettings()
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.notify_urls == []
    assert (settings.app_id, settings.web_host, settings.web_port) == (
        "pghd-alerts",
        "127.0.0.1",
        6067,
    )
    assert (settings.topic_partitions, settings.store) == (8, "memory://")


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHD_KAFKA_BOOTSTRAP", "shared:9092")
    monkeypatch.setenv("PGHD_ALERTS_NOTIFY_URLS", '["json://127.0.0.1:9999/hook"]')
    monkeypatch.setenv("PGHD_ALERTS_WEB_PORT", "7000")
    settings = AlertsSettings()
    assert settings.kafka_bootstrap == "shared:9092"
    assert settings.notify_urls == ["json://127.0.0.1:9999/hook"]
    assert settings.web_port == 7000
    monkeypatch.setenv("PGHD_ALERTS_KAFKA_BOOTSTRAP", "own:9092")
    assert AlertsSettings().kafka_bootstrap == "own:9092"
