"""Prometheus scrapes all four services, on the ports they serve /metrics on.

Which services there are comes from docker-compose.yml (every long-running service of the
pghd image), so a service added there without a scrape job fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from alerts.api.settings import CareApiSettings
from alerts.settings import AlertsSettings
from ingest.settings import IngestSettings
from processors.settings import ProcessorSettings

ROOT = Path(__file__).resolve().parents[2]
WEB_PORTS = {
    "processors": ProcessorSettings.model_fields["web_port"].default,
    "alerts": AlertsSettings.model_fields["web_port"].default,
}
#: The FastAPI services: one scrape target each in compose (their host port is published).
API_PORTS = {
    "ingest": IngestSettings.model_fields["port"].default,
    "care-api": CareApiSettings.model_fields["port"].default,
}


def _jobs() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose


def _scraped_hosts(job: dict[str, Any]) -> set[str]:
    static = {t.split(":")[0] for sc in job.get("static_configs", []) for t in sc["targets"]}
    found = {name for sd in job.get("dns_sd_configs", []) for name in sd["names"]}
    return static | found


def test_every_service_is_a_scrape_job_at_its_metrics_port() -> None:
    jobs = _jobs()
    assert set(jobs) == {"ingest", "processors", "alerts", "care-api"}
    assert all(job["metrics_path"] == "/metrics" for job in jobs.values())
    for service, port in API_PORTS.items():
        assert jobs[service]["static_configs"][0]["targets"] == [f"{service}:{port}"]
    for service, port in WEB_PORTS.items():
        (discovery,) = jobs[service]["dns_sd_configs"]  # every replica, not one of them
        assert discovery == {"names": [service], "type": "A", "port": port}


def test_every_long_running_service_of_compose_is_scraped() -> None:
    services = _compose()["services"]
    pghd = {
        name
        for name, svc in services.items()
        if svc.get("image") == "pghd:local" and svc.get("restart") != "no"
    }
    assert pghd == set(WEB_PORTS) | set(API_PORTS)
    scraped = {host for job in _jobs().values() for host in _scraped_hosts(job)}
    assert pghd <= scraped, f"not scraped: {sorted(pghd - scraped)}"


def test_compose_exposes_and_k8s_annotates_the_metrics_ports() -> None:
    compose = _compose()
    for service, port in {**WEB_PORTS, **API_PORTS}.items():
        if service in WEB_PORTS:
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
        }, service
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        name = "web" if service in WEB_PORTS else "http"
        assert {"name": name, "containerPort": port} in container["ports"], service
