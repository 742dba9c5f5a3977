"""Prometheus scrapes all three services, on the ports they serve /metrics on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from alerts.settings import AlertsSettings
from processors.settings import ProcessorSettings

ROOT = Path(__file__).resolve().parents[2]
WEB_PORTS = {
    "processors": ProcessorSettings.model_fields["web_port"].default,
    "alerts": AlertsSettings.model_fields["web_port"].default,
}


def _jobs() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_every_service_is_a_scrape_job_at_its_metrics_port() -> None:
    jobs = _jobs()
    assert set(jobs) == {"ingest", "processors", "alerts"}
    assert all(job["metrics_path"] == "/metrics" for job in jobs.values())
    assert jobs["ingest"]["static_configs"][0]["targets"] == ["ingest:8000"]
    for service, port in WEB_PORTS.items():
        (discovery,) = jobs[service]["dns_sd_configs"]  # every replica, not one of them
        assert discovery == {"names": [service], "type": "A", "port": port}


def test_compose_exposes_and_k8s_annotates_the_metrics_ports() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for service, port in WEB_PORTS.items():
        assert compose["services"][service]["expose"] == [str(port)]
        manifests = list(
            yaml.safe_load_all((ROOT / "deploy" / "k8s" / f"{service}.yaml").read_text())
        )
        workload = next(m for m in manifests if m["kind"] in {"Deployment", "StatefulSet"})
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(port),
            "prometheus.io/path": "/metrics",
        }
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        assert {"name": "web", "containerPort": port} in container["ports"]
