"""deploy/k8s: every manifest valid for a recent Kubernetes, and the project's rules.

Schema validation is kubernetes-validate's (it bundles the OpenAPI-derived JSON schemas of
each Kubernetes release, so it runs offline), in strict mode (unknown fields are errors).
The rules: kustomization lists every manifest but the example Secret; the four services
(the care-team API included) each run their module; every container runs the pghd image
with resource requests and probes; both APIs are probed on /healthz and /readyz; the HPA
scales the ingest Deployment; processors replicas do not exceed the partitions; the
care-team API has a Service and a PodDisruptionBudget, its users file from a Secret and its
routing file from a ConfigMap, both mounted so that they update; each container's variables
are read by its service's settings class (or by :mod:`pghd.kafka_security`) and come from
the ConfigMap/Secret that define them, and so do the files its volumes mount; every workload
reaches Kafka over SASL_SSL as a user of its own, with the brokers' CA mounted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic_settings import BaseSettings

from alerts.api.settings import CareApiSettings
from alerts.settings import AlertsSettings
from deploy.local.acls import DEFAULT_ACL_SPEC
from ingest.settings import IngestSettings
from pghd.access import UsersFile
from pghd.alerting import RoutingConfig
from pghd.kafka_acls import load_acl_spec, password_env
from pghd.kafka_security import ENV_NAMES
from pghd.topics import load_spec
from processors.settings import ProcessorSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.37.0"
EXAMPLE_SECRET = "secret.example.yaml"
SETTINGS: dict[str, type[BaseSettings]] = {
    "ingest": IngestSettings,
    "processors": ProcessorSettings,
    "alerts": AlertsSettings,
    "care-api": CareApiSettings,
}
#: The long-running services: their workload and the module each runs.
SERVICES = {
    ("Deployment", "ingest"): "ingest.main",
    ("StatefulSet", "processors"): "processors.main",
    ("Deployment", "alerts"): "alerts.main",
    ("Deployment", "care-api"): "alerts.api.main",
}
#: The HTTP APIs: liveness on /healthz, readiness on /readyz.
APIS = [("Deployment", "ingest"), ("Deployment", "care-api")]
WORKLOADS = {"Deployment", "StatefulSet", "Job"}

Manifest = dict[str, Any]


def _documents(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _manifests() -> list[tuple[str, Manifest]]:
    return [
        (f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc)
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in _documents(path)
    ]


def _kustomization() -> Manifest:
    return _documents(K8S / "kustomization.yaml")[0]


def _resources() -> dict[tuple[str, str], Manifest]:
    return {
        (doc["kind"], doc["metadata"]["name"]): doc
        for name in _kustomization()["resources"]
        for doc in _documents(K8S / name)
    }


def _example_secrets() -> dict[str, Manifest]:
    return {doc["metadata"]["name"]: doc for doc in _documents(K8S / EXAMPLE_SECRET)}


def _containers(doc: Manifest) -> Iterator[Manifest]:
    yield from doc["spec"]["template"]["spec"]["containers"]


def _env_names(settings: type[BaseSettings]) -> set[str]:
    prefix = str(settings.model_config.get("env_prefix", ""))
    names = set()
    for field_name, info in settings.model_fields.items():
        choices = getattr(info.validation_alias, "choices", None)
        if choices:
            names |= {c for c in choices if isinstance(c, str) and c.upper() == c}
        else:
            names.add(f"{prefix}{field_name}".upper())
    return names


@pytest.mark.parametrize(("where", "doc"), _manifests(), ids=[m[0] for m in _manifests()])
def test_manifest_is_valid_kubernetes(where: str, doc: Manifest) -> None:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{where}: {exc.message} at {list(exc.path)}")


def test_the_validator_rejects_a_broken_manifest() -> None:
    doc = _resources()[("Deployment", "ingest")]
    broken = yaml.safe_load(yaml.safe_dump(doc))
    broken["spec"]["replicas"] = "two"
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGets"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    kustomization = _kustomization()
    assert kustomization["kind"] == "Kustomization"
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present - {EXAMPLE_SECRET}
    assert kustomization["namespace"] == "pghd"
    assert [i["name"] for i in kustomization["images"]] == ["pghd"]
    for (_kind, name), doc in _resources().items():
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "pghd", name


def test_the_example_secret_holds_placeholders_only() -> None:
    secrets = _example_secrets()
    assert set(secrets) == {"pghd-secrets", "pghd-kafka-ca", "pghd-care-api-users"}
    for secret in secrets.values():
        assert secret["kind"] == "Secret" and "data" not in secret
        for key, value in secret["stringData"].items():
            assert "change-me" in value or "example" in value or key == "PGHD_INGEST_API_KEYS"


def test_workloads_run_the_image_with_requests_and_probes() -> None:
    for (kind, name), doc in _resources().items():
        if kind not in WORKLOADS:
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for container in _containers(doc):
            assert container["image"] == "pghd", name
            requests = container["resources"]["requests"]
            assert {"cpu", "memory"} <= set(requests), name
            assert "memory" in container["resources"]["limits"], name
            if kind != "Job":
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    assert probe in container, f"{name}: no {probe}"


def test_the_four_services_run_here() -> None:
    resources = _resources()
    running = {key for key in resources if key[0] in {"Deployment", "StatefulSet"}}
    assert running == set(SERVICES), "each pghd service runs here (and only those)"
    for key, module in SERVICES.items():
        (container,) = _containers(resources[key])
        assert container["command"] == ["python", "-m", module], key


@pytest.mark.parametrize("key", APIS, ids=[name for _, name in APIS])
def test_the_apis_probe_health_and_readiness(key: tuple[str, str]) -> None:
    (container,) = _containers(_resources()[key])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        assert container[probe]["httpGet"]["path"] == path, (key, probe)
        assert container[probe]["httpGet"]["port"] in ports, (key, probe)


def _selects(selector: Manifest, labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_the_care_api_has_a_service_and_a_disruption_budget() -> None:
    resources = _resources()
    deployment = resources[("Deployment", "care-api")]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    (container,) = _containers(deployment)
    port_names = {p["name"] for p in container["ports"]}
    service = resources[("Service", "care-api")]
    assert _selects(service["spec"]["selector"], labels)
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    budget = resources[("PodDisruptionBudget", "care-api")]
    assert _selects(budget["spec"]["selector"]["matchLabels"], labels)
    # A drain may take one pod, never the last one.
    assert 1 <= budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    # Its settings: listening on every interface of the pod, on the port probed.
    env = {v["name"]: v.get("value") for v in container["env"]}
    assert env["PGHD_CARE_API_HOST"] == "0.0.0.0"
    assert {"name": "http", "containerPort": int(env["PGHD_CARE_API_PORT"])} in container["ports"]


def _mounted_file(doc: Manifest, path: str) -> tuple[Manifest, Manifest]:
    """The volume mount and volume that hold file ``path`` of ``doc``'s container."""
    (container,) = _containers(doc)
    parent, name = str(Path(path).parent), Path(path).name
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == parent]
    assert "subPath" not in mount, "a subPath mount never sees the updated Secret/ConfigMap"
    pod = doc["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    source = volume.get("secret") or volume["configMap"]
    assert name in {item["path"] for item in source.get("items", [{"path": name}])}
    return mount, volume


def _item_key(source: Manifest, path: str) -> str:
    items = {item["path"]: item["key"] for item in source.get("items", [])}
    return items.get(path, path)


def test_the_care_api_reads_its_users_from_a_secret_and_its_routing_from_a_configmap() -> None:
    resources = _resources()
    deployment = resources[("Deployment", "care-api")]
    (container,) = _containers(deployment)
    env = {v["name"]: v.get("value") for v in container["env"]}
    users_path, routing_path = env["PGHD_CARE_API_USERS_FILE"], env["PGHD_CARE_API_ROUTING_FILE"]

    mount, volume = _mounted_file(deployment, users_path)
    assert mount.get("readOnly") is True
    secret = _example_secrets()[volume["secret"]["secretName"]]
    users = secret["stringData"][_item_key(volume["secret"], Path(users_path).name)]
    assert UsersFile.model_validate_json(users).users  # the example parses, holds a user

    mount, volume = _mounted_file(deployment, routing_path)
    assert mount.get("readOnly") is True
    config_map = resources[("ConfigMap", volume["configMap"]["name"])]
    routing = config_map["data"][_item_key(volume["configMap"], Path(routing_path).name)]
    RoutingConfig.model_validate_json(routing)  # the API starts with it


def test_every_mounted_secret_and_configmap_is_defined() -> None:
    resources = _resources()
    secrets = _example_secrets()
    for key, doc in resources.items():
        if key[0] not in WORKLOADS:
            continue
        for volume in doc["spec"]["template"]["spec"].get("volumes", []):
            if "secret" in volume:
                data = secrets[volume["secret"]["secretName"]]["stringData"]
                items = volume["secret"].get("items", [])
            elif "configMap" in volume:
                data = resources[("ConfigMap", volume["configMap"]["name"])]["data"]
                items = volume["configMap"].get("items", [])
            else:
                continue
            assert {item["key"] for item in items} <= set(data), (key, volume["name"])


def test_the_hpa_scales_the_ingest_deployment() -> None:
    resources = _resources()
    (hpa,) = [doc for (kind, _), doc in resources.items() if kind == "HorizontalPodAutoscaler"]
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) in resources
    assert (target["kind"], target["name"]) == ("Deployment", "ingest")
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (container,) = _containers(resources[("Deployment", "ingest")])
    assert "cpu" in container["resources"]["requests"], "CPU utilisation needs a CPU request"


def test_processors_do_not_outnumber_the_partitions() -> None:
    resources = _resources()
    partitions = {t.name: t.partitions for t in load_spec(ROOT / "deploy" / "topics.json")}
    processors = resources[("StatefulSet", "processors")]
    assert processors["spec"]["replicas"] <= partitions["pghd.measurements.v1"]
    config = resources[("ConfigMap", "pghd-config")]["data"]
    assert int(config["PGHD_PROCESSORS_TOPIC_PARTITIONS"]) == partitions["pghd.measurements.v1"]
    assert int(config["PGHD_ALERTS_TOPIC_PARTITIONS"]) == partitions["pghd.anomalies.v1"]
    assert processors["spec"]["serviceName"] in {name for _, name in resources}
    (claim,) = processors["spec"]["volumeClaimTemplates"]
    mounts = {m["mountPath"]: m["name"] for m in next(_containers(processors))["volumeMounts"]}
    assert mounts["/data"] == claim["metadata"]["name"]


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_container_variables_are_read_by_the_service_and_defined(service: str) -> None:
    resources = _resources()
    config = resources[("ConfigMap", "pghd-config")]["data"]
    secret = _example_secrets()["pghd-secrets"]
    workload = resources.get(("Deployment", service)) or resources[("StatefulSet", service)]
    (container,) = _containers(workload)
    known = _env_names(SETTINGS[service]) | ENV_NAMES
    for var in container["env"]:
        assert var["name"] in known, f"{service}: {var['name']} is not read"
        source = var.get("valueFrom", {})
        if "configMapKeyRef" in source:
            assert source["configMapKeyRef"]["key"] in config, var
        if "secretKeyRef" in source:
            assert source["secretKeyRef"]["key"] in secret["stringData"], var
        if any(word in var["name"] for word in ("TOKEN", "API_KEYS", "NOTIFY_URLS", "PASSWORD")):
            assert "secretKeyRef" in source, f"{var['name']} must come from the Secret"


#: The Kafka user of each workload (the Jobs: the admin, a super user of the cluster).
KAFKA_USERS = {
    ("Deployment", "ingest"): "ingest",
    ("StatefulSet", "processors"): "processors",
    ("Deployment", "alerts"): "alerts",
    ("Deployment", "care-api"): "care-api",
    ("Job", "pghd-topics"): "admin",
    ("Job", "pghd-kafka-acls"): "admin",
}


def _env_of(container: Manifest) -> dict[str, Manifest]:
    return {var["name"]: var for var in container["env"]}


def _config_value(var: Manifest, config: dict[str, str]) -> str:
    if "value" in var:
        return str(var["value"])
    return config[var["valueFrom"]["configMapKeyRef"]["key"]]


def test_every_workload_reaches_kafka_over_sasl_ssl_as_its_own_user_with_the_ca() -> None:
    resources = _resources()
    config = resources[("ConfigMap", "pghd-config")]["data"]
    secrets = _example_secrets()
    spec = load_acl_spec(DEFAULT_ACL_SPEC)
    workloads = {key for key, doc in resources.items() if key[0] in WORKLOADS}
    assert workloads == set(KAFKA_USERS), "every workload here talks to Kafka"
    for key, user in KAFKA_USERS.items():
        pod = resources[key]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = _env_of(container)
        assert _config_value(env["PGHD_KAFKA_SECURITY_PROTOCOL"], config) == "SASL_SSL", key
        assert _config_value(env["PGHD_KAFKA_SASL_MECHANISM"], config) == spec.mechanism, key
        assert env["PGHD_KAFKA_USERNAME"]["value"] == user, key
        password = env["PGHD_KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"]
        wanted = "PGHD_KAFKA_ADMIN_PASSWORD" if user == "admin" else password_env(user)
        assert (password["name"], password["key"]) == ("pghd-secrets", wanted), key
        assert wanted in secrets["pghd-secrets"]["stringData"]
        if user != "admin":
            assert user in spec.users, f"{key}: Kafka user {user} has no ACLs"
        # The CA file is the ca.crt of Secret pghd-kafka-ca, mounted read-only.
        ca_file = Path(_config_value(env["PGHD_KAFKA_CA_FILE"], config))
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(ca_file.parent)]
        assert mount.get("readOnly") is True, key
        (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        assert volume["secret"]["secretName"] == "pghd-kafka-ca", key
        assert {"key": "ca.crt", "path": ca_file.name} in volume["secret"]["items"], key
    assert "ca.crt" in secrets["pghd-kafka-ca"]["stringData"]
    users = [u for u in KAFKA_USERS.values() if u != "admin"]
    assert len(users) == len(set(users)), "one Kafka user per service"


def test_the_acl_job_sets_every_users_password_and_applies_the_spec() -> None:
    job = _resources()[("Job", "pghd-kafka-acls")]
    (container,) = _containers(job)
    env = _env_of(container)
    secret = _example_secrets()["pghd-secrets"]["stringData"]
    for user in load_acl_spec(DEFAULT_ACL_SPEC).users:
        ref = env[password_env(user)]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "pghd-secrets", "key": password_env(user)}, user
        assert password_env(user) in secret
    assert container["command"][:3] == ["pghd", "kafka", "apply"]
    assert "--require-passwords" in container["command"]


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_a_service_that_reads_influxdb_is_told_where_it_is(service: str) -> None:
    """Ingest (exports) and the care-team API (/v1/me, /fhir) read InfluxDB: without the
    variables they would answer those routes 503 in the cluster."""
    if "influx_token" not in SETTINGS[service].model_fields:
        return
    resources = _resources()
    workload = resources.get(("Deployment", service)) or resources[("StatefulSet", service)]
    (container,) = _containers(workload)
    names = {var["name"] for var in container["env"]}
    wanted = {"PGHD_INFLUX_URL", "PGHD_INFLUX_TOKEN", "PGHD_INFLUX_ORG", "PGHD_INFLUX_BUCKET"}
    assert wanted <= names, service
