"""Alerts settings: prefix, the shared Kafka fallback, JSON list of URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.settings import AlertsSettings

EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "alerts" / "routing.example.json"


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "PGHD_KAFKA_BOOTSTRAP",
        "PGHD_ALERTS_KAFKA_BOOTSTRAP",
        "PGHD_ALERTS_NOTIFY_URLS",
        "PGHD_ALERTS_ROUTING_FILE",
        "PGHD_ALERTS_GROUPING",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = AlertsSettings()
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.notify_urls == [] and settings.routing_file is None
    assert settings.routing_config() is None
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


def test_default_routing_from_notify_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGHD_ALERTS_ROUTING_FILE", raising=False)
    monkeypatch.setenv("PGHD_ALERTS_NOTIFY_URLS", '["json://h/1", "json://h/2"]')
    monkeypatch.setenv("PGHD_ALERTS_GROUPING", '{"group_interval_s": 60}')
    settings = AlertsSettings()
    config = settings.routing_config()
    assert config is not None
    assert config.channels == {"notify-1": "json://h/1", "notify-2": "json://h/2"}
    (route,) = config.routes
    assert route.severities is None and route.teams is None and route.repeat_interval_s is None
    assert [step.channels for step in route.escalation] == [["notify-1", "notify-2"]]
    assert settings.grouping_policy(config).group_interval_s == 60
    monkeypatch.setenv("PGHD_ALERTS_NOTIFY_URLS", "[]")
    assert AlertsSettings().routing_config() is None
    assert AlertsSettings().grouping_policy(None).group_interval_s == 60


def test_routing_file_wins_and_grouping_overrides_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PGHD_ALERTS_ROUTING_FILE", str(EXAMPLE))
    monkeypatch.setenv("PGHD_ALERTS_NOTIFY_URLS", '["json://h/ignored"]')
    monkeypatch.delenv("PGHD_ALERTS_GROUPING", raising=False)
    config = AlertsSettings().routing_config()
    assert config is not None and "ward-a-nurses" in config.channels
    assert AlertsSettings().grouping_policy(config).group_interval_s == 3600
    monkeypatch.setenv("PGHD_ALERTS_GROUPING", '{"auto_resolve_after_s": 10}')
    config = AlertsSettings().routing_config()
    assert config is not None and config.grouping.auto_resolve_after_s == 10


def test_retry_policy_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "PGHD_ALERTS_NOTIFY_BACKOFF_S",
        "PGHD_ALERTS_NOTIFY_MAX_BACKOFF_S",
        "PGHD_ALERTS_NOTIFY_RETRY_HORIZON_S",
        "PGHD_ALERTS_PAGE_LATE",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = AlertsSettings()
    policy = settings.retry_policy()
    assert (policy.backoff_s, policy.max_backoff_s, policy.horizon_s) == (1.0, 300.0, 21600.0)
    assert settings.notify_max_age_s == 86400 and settings.page_late
    monkeypatch.setenv("PGHD_ALERTS_NOTIFY_MAX_BACKOFF_S", "30")
    monkeypatch.setenv("PGHD_ALERTS_NOTIFY_RETRY_HORIZON_S", "3600")
    monkeypatch.setenv("PGHD_ALERTS_PAGE_LATE", "false")
    settings = AlertsSettings()
    assert settings.retry_policy().max_backoff_s == 30 and settings.retry_policy().horizon_s == 3600
    assert not settings.page_late
