"""docker-compose.yml: valid against the Compose Specification, and the project's rules.

The schema is the official Compose Specification JSON schema as vendored by check-jsonschema
(``check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml`` runs the same
check from the shell). No Docker engine exists here, so the rules below are what stands
between the file and a stack that does not come up: health checks, restart policies,
secrets only from ``.env``, every ``PGHD_*`` variable read by the settings class of the
service it is given to (or by :mod:`pghd.kafka_security`), partition counts matching the topic
spec, processors scalable; Kafka reachable over SASL_SSL only, with ACLs, every client a user
of its own with the CA; the four services (the care-team API included) each running its
module with a health check on its own port, the care-team API with its users and routing
files mounted read-only.
"""

from __future__ import annotations

import importlib.resources
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic_settings import BaseSettings
from typer.testing import CliRunner

from alerts.api.settings import CareApiSettings
from alerts.settings import AlertsSettings
from deploy.local.acls import DEFAULT_ACL_SPEC
from deploy.local.kafka import BROKER_CONFIG, read_properties
from ingest.settings import IngestSettings
from pghd.alerting import RoutingConfig
from pghd.cli import app
from pghd.kafka_acls import load_acl_spec, password_env
from pghd.kafka_security import ENV_NAMES, KafkaSecurity
from pghd.topics import load_spec
from processors.settings import ProcessorSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
TOPICS = ROOT / "deploy" / "topics.json"

#: The pghd image's services and the settings class each one reads.
SETTINGS: dict[str, type[BaseSettings]] = {
    "ingest": IngestSettings,
    "processors": ProcessorSettings,
    "alerts": AlertsSettings,
    "care-api": CareApiSettings,
}
#: Each service's module (``python -m``), the settings field of its HTTP port and the path
#: its health check asks (the APIs: ready; the Faust workers: their web server's root).
SERVICES = {
    "ingest": ("ingest.main", "port", "/readyz"),
    "processors": ("processors.main", "web_port", "/"),
    "alerts": ("alerts.main", "web_port", "/"),
    "care-api": ("alerts.api.main", "port", "/readyz"),
}
#: Variable names that hold secrets: their value must come from .env.
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|API_KEYS|NOTIFY_URLS")
#: ``${NAME}``, ``${NAME:-default}``, ``${NAME:?message}``...
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?:(:?[-?+])([^}]*))?\}")
REQUIRED = re.compile(r"^\$\{[A-Z0-9_]+:\?[^}]+\}$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def _compose_schema() -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads((vendor / "compose-spec.json").read_text())
    return schema


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping, so it can be checked by name"
    return {k: str(v) for k, v in env.items() if v is not None}


def _one_shots(services: dict[str, dict[str, Any]]) -> set[str]:
    """Services others wait on to complete successfully."""
    return {
        name
        for svc in services.values()
        for name, cond in (svc.get("depends_on") or {}).items()
        if cond.get("condition") == "service_completed_successfully"
    }


def _env_names(settings: type[BaseSettings]) -> set[str]:
    """Every environment variable name ``settings`` reads."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    names = set()
    for field_name, info in settings.model_fields.items():
        alias = info.validation_alias
        choices = getattr(alias, "choices", None)
        if choices:
            names |= {c.upper() for c in choices if isinstance(c, str) and c.upper() == c}
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{prefix}{field_name}".upper())
    return names


def test_compose_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(_compose_schema())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, "\n".join(errors)


def test_the_schema_catches_a_broken_file(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["ingest"]["restart"] = {"policy": "always"}
    broken["services"]["ingest"]["healthchek"] = {}
    errors = list(jsonschema.Draft7Validator(_compose_schema()).iter_errors(broken))
    assert len(errors) >= 2


def test_every_service_has_a_restart_policy_and_a_health_check_or_runs_once(
    services: dict[str, dict[str, Any]],
) -> None:
    one_shots = _one_shots(services)
    assert one_shots == {"topics", "grafana-token", "kafka-certs", "kafka-acls"}
    for name, svc in services.items():
        assert "restart" in svc, f"{name}: no restart policy"
        if name in one_shots:
            assert svc["restart"] == "no", f"{name} runs once: restart 'no'"
            continue
        assert svc["restart"] in {"unless-stopped", "always"}, name
        check = svc.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name}: no healthcheck"


def test_depends_on_only_waits_for_health_checked_services(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}'s health"


def test_secrets_come_from_env_and_env_example_lists_them(
    services: dict[str, dict[str, Any]],
) -> None:
    text = COMPOSE.read_text()
    referenced = {m.group(1) for m in INTERPOLATION.finditer(text)}
    example = {
        line.split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert referenced == example, (
        f"only in compose: {sorted(referenced - example)}; "
        f"only in .env.example: {sorted(example - referenced)}"
    )
    optional = {
        line.lstrip("# ").split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if re.match(r"^#\s*[A-Z0-9_]+=", line)
    }
    for name, svc in services.items():
        for key, value in svc.get("environment", {}).items():
            if value is None:  # passed through from .env when set there: optional
                assert key in optional, f"{name}.{key}: document it in .env.example"
            elif SECRET_NAME.search(key):
                assert REQUIRED.match(value), f"{name}.{key} must be ${{VAR:?...}} from .env"


def test_env_example_holds_placeholders_only() -> None:
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            if SECRET_NAME.search(key) and key not in {"PGHD_INGEST_API_KEYS"}:
                assert "change-me" in value or "example" in value or "sink" in value, key


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_service_variables_are_read_by_its_settings_class(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    env = {key: str(value) for key, value in services[name]["environment"].items()}
    known = _env_names(SETTINGS[name]) | ENV_NAMES
    pghd = {key for key in env if key.startswith("PGHD_")}
    assert pghd, name
    assert pghd <= known, f"{name}: not read by {SETTINGS[name].__name__}: {pghd - known}"
    assert set(env) == pghd, f"{name}: non-PGHD variables {set(env) - pghd}"


def test_processors_scale_and_match_the_partitions(services: dict[str, dict[str, Any]]) -> None:
    spec = {t.name: t.partitions for t in load_spec(TOPICS)}
    processors = services["processors"]
    assert "container_name" not in processors and "ports" not in processors
    # One anonymous volume per container: no writable named volume shared by scaled workers.
    volumes = processors.get("volumes", [])
    assert all(":" not in v or v.endswith(":ro") for v in volumes), volumes
    env = _env(processors)
    assert env["PGHD_PROCESSORS_STORE"] == "rocksdb://"
    assert int(env["PGHD_PROCESSORS_TOPIC_PARTITIONS"]) == spec["pghd.measurements.v1"]
    assert (
        int(_env(services["alerts"])["PGHD_ALERTS_TOPIC_PARTITIONS"]) == (spec["pghd.anomalies.v1"])
    )


def _mounts(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """target -> (source, mode) of a service's volumes (a source may be ``${VAR:?...}``)."""
    found = {}
    for volume in service.get("volumes", []):
        variable = INTERPOLATION.match(volume)
        source = variable.group(0) if variable else ""
        rest = volume[len(source) :].removeprefix(":")
        if not source and ":" not in rest:  # an anonymous volume
            found[rest] = ("", "rw")
            continue
        if not source:
            source, rest = rest.split(":", 1)
        target, *mode = rest.split(":")
        found[target] = (source, mode[0] if mode else "rw")
    return found


def _port(name: str, service: dict[str, Any]) -> int:
    """The port a service serves HTTP on: its variable in compose, else its default."""
    settings, field = SETTINGS[name], SERVICES[name][1]
    variable = f"{settings.model_config.get('env_prefix', '')}{field}".upper()
    return int(_env(service).get(variable, settings.model_fields[field].default))


def test_the_four_services_run_with_a_health_check_on_their_port(
    services: dict[str, dict[str, Any]],
) -> None:
    long_running = {
        name
        for name, svc in services.items()
        if svc.get("image") == "pghd:local" and svc.get("restart") != "no"
    }
    assert long_running == set(SERVICES), "each pghd service runs here (and only those)"
    for name, (module, _, path) in SERVICES.items():
        svc = services[name]
        assert svc["command"] == ["python", "-m", module], name
        test = " ".join(svc["healthcheck"]["test"])
        assert f"http://localhost:{_port(name, svc)}{path}'" in test, (name, test)


def test_the_care_api_has_its_users_and_routing_files_mounted_read_only(
    services: dict[str, dict[str, Any]],
) -> None:
    care = services["care-api"]
    env, mounts = _env(care), _mounts(care)
    assert env["PGHD_CARE_API_HOST"] == "0.0.0.0"
    assert care["ports"] == [f"127.0.0.1:{_port('care-api', care)}:{_port('care-api', care)}"]
    # The users file's directory is mounted (an edited file is a new inode: a mounted file
    # would keep the old one and tokens would not rotate without a restart).
    users = Path(env["PGHD_CARE_API_USERS_FILE"])
    source, mode = mounts[str(users.parent)]
    assert mode == "ro" and REQUIRED.match(source), source
    source, mode = mounts[env["PGHD_CARE_API_ROUTING_FILE"]]
    assert mode == "ro" and REQUIRED.match(source), source
    # The routing file .env.example names is one the API starts with.
    example = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )
    variable = INTERPOLATION.match(source)
    assert variable is not None
    RoutingConfig.model_validate_json((ROOT / example[variable.group(1)]).read_bytes())
    assert "/care-api-users/" in (ROOT / ".gitignore").read_text().splitlines()
    assert example["CARE_API_USERS_DIR"] == "./care-api-users"


def test_kafka_keeps_its_log_in_a_named_volume(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    log_dir = read_properties(BROKER_CONFIG)["log.dirs"]
    volume, mode = _mounts(kafka)[log_dir]
    assert volume in compose["volumes"] and mode == "rw"


def test_kafka_runs_the_checked_broker_configuration(services: dict[str, dict[str, Any]]) -> None:
    kafka = services["kafka"]
    mounts = _mounts(kafka)
    (config_dir,) = [t for t, (src, _) in mounts.items() if src == "./deploy/kafka"]
    script = (ROOT / "deploy" / "kafka" / "start-broker.sh").read_text()
    assert kafka["command"] == ["sh", f"{config_dir}/start-broker.sh"]
    assert f"{config_dir}/server.properties" in script  # the file start-broker.sh runs
    # Every secret the configuration reads (${env:NAME}) is given to the broker.
    wanted = set(re.findall(r"\$\{env:([A-Z0-9_]+)\}", BROKER_CONFIG.read_text()))
    assert wanted == {"PGHD_KAFKA_BROKER_PASSWORD", "PGHD_KAFKA_SSL_PASSWORD"}
    assert wanted | {"PGHD_KAFKA_ADMIN_PASSWORD"} <= set(_env(kafka))
    # The stores the configuration names are those kafka-certs writes, mounted read-only.
    props = read_properties(BROKER_CONFIG)
    certs = services["kafka-certs"]
    tls_dir = str(Path(props["ssl.keystore.location"]).parent)
    assert str(Path(props["ssl.truststore.location"]).parent) == tls_dir
    volume, mode = mounts[tls_dir]
    assert mode == "ro"
    assert certs["command"][:2] == ["sh", f"{config_dir}/make-certs.sh"]
    broker_dir, ca_dir = certs["command"][2:]
    assert _mounts(certs)[broker_dir][0] == volume
    assert kafka["depends_on"]["kafka-certs"] == {"condition": "service_completed_successfully"}
    # The health check connects as the admin with the client settings start-broker.sh writes.
    assert "--command-config /tmp/admin-client.properties" in kafka["healthcheck"]["test"][1]
    assert "/tmp/admin-client.properties" in script
    assert _mounts(kafka)[ca_dir] == (_mounts(certs)[ca_dir][0], "ro")


def _listeners(value: str) -> dict[str, tuple[str, int]]:
    found = {}
    for item in value.split(","):
        name, _, address = item.partition("://")
        host, _, port = address.rpartition(":")
        found[name] = (host, int(port))
    return found


def test_kafka_takes_clients_over_sasl_ssl_only_and_authorizes_every_request(
    services: dict[str, dict[str, Any]],
) -> None:
    props = read_properties(BROKER_CONFIG)
    protocols = dict(item.split(":") for item in props["listener.security.protocol.map"].split(","))
    listeners = _listeners(props["listeners"])
    assert set(listeners) == set(protocols)
    assert not {"PLAINTEXT", "SASL_PLAINTEXT"} & set(protocols.values()), protocols
    for name, (host, _port) in listeners.items():
        if protocols[name] == "SASL_SSL":
            continue
        # Anything else (the KRaft controller) is on the container's loopback, and asks for
        # the client's certificate.
        assert host in {"localhost", "127.0.0.1"}, (name, host)
        assert props[f"listener.name.{name.lower()}.ssl.client.auth"] == "required", name
    advertised = _listeners(props["advertised.listeners"])
    assert {protocols[name] for name in advertised} == {"SASL_SSL"}
    assert [host for host, _ in advertised.values()] == ["kafka"]
    assert props["inter.broker.listener.name"] in advertised
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert props["ssl.endpoint.identification.algorithm"] == "https"
    assert (
        props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    )
    assert props["allow.everyone.if.no.acl.found"] == "false"
    spec = load_acl_spec(DEFAULT_ACL_SPEC)
    super_users = props["super.users"].split(";")
    assert {f"User:{u}" for u in spec.super_users} <= set(super_users)
    assert not {f"User:{u}" for u in spec.users} & set(super_users)
    assert "ports" not in services["kafka"], "Kafka is for the project's containers only"


#: The Kafka user of each service that talks to Kafka (topics and kafka-acls: the admin).
KAFKA_USERS = {
    "ingest": "ingest",
    "processors": "processors",
    "alerts": "alerts",
    "care-api": "care-api",
    "topics": "admin",
    "kafka-acls": "admin",
}


def test_every_kafka_client_is_its_own_user_over_sasl_ssl_with_the_ca(
    services: dict[str, dict[str, Any]],
) -> None:
    spec = load_acl_spec(DEFAULT_ACL_SPEC)
    certs = services["kafka-certs"]
    ca_dir = certs["command"][3]
    ca_volume = _mounts(certs)[ca_dir][0]
    users = {}
    for name, user in KAFKA_USERS.items():
        env = _env(services[name])
        assert env["PGHD_KAFKA_BOOTSTRAP"] == "kafka:9092", name
        assert env["PGHD_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
        assert env["PGHD_KAFKA_SASL_MECHANISM"] == spec.mechanism, name
        ca_file = Path(env["PGHD_KAFKA_CA_FILE"])
        assert _mounts(services[name])[str(ca_file.parent)] == (ca_volume, "ro"), name
        assert ca_file.name == "ca.crt"
        assert env["PGHD_KAFKA_USERNAME"] == user, name
        variable = "PGHD_KAFKA_ADMIN_PASSWORD" if user == "admin" else password_env(user)
        assert env["PGHD_KAFKA_PASSWORD"].startswith("${" + variable + ":?"), name
        # The settings hold together (pghd.kafka_security's own checks).
        KafkaSecurity(protocol="SASL_SSL", username=user, password="x")
        users[name] = user
        if user != "admin":
            assert user in spec.users, f"{name}: Kafka user {user} has no ACLs"
            depends = services[name]["depends_on"]
            assert depends["kafka-acls"] == {"condition": "service_completed_successfully"}
    services_users = [u for u in users.values() if u != "admin"]
    assert len(services_users) == len(set(services_users)), "one Kafka user per service"
    assert "PGHD_KAFKA_ADMIN_PASSWORD" in _env(services["kafka"])  # formatted in as admin
    assert "admin" in spec.super_users


def test_the_acl_job_sets_every_users_password_and_applies_the_spec(
    services: dict[str, dict[str, Any]],
) -> None:
    spec = load_acl_spec(DEFAULT_ACL_SPEC)
    job = services["kafka-acls"]
    env = _env(job)
    for user in spec.users:
        assert env[password_env(user)].startswith("${" + password_env(user) + ":?"), user
    command = job["command"]
    assert command[:3] == ["pghd", "kafka", "apply"]
    result = CliRunner().invoke(app, [*command[1:3], "--help"])
    assert result.exit_code == 0, result.output
    for option in (c for c in command[3:] if c.startswith("--")):
        assert option in result.output, option
    assert "--require-passwords" in command
    assert job["depends_on"]["kafka"] == {"condition": "service_healthy"}


def test_influxdb_is_initialised_for_the_services(services: dict[str, dict[str, Any]]) -> None:
    init = _env(services["influxdb"])
    processors = _env(services["processors"])
    assert init["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert init["DOCKER_INFLUXDB_INIT_ORG"] == processors["PGHD_INFLUX_ORG"]
    assert init["DOCKER_INFLUXDB_INIT_BUCKET"] == processors["PGHD_INFLUX_BUCKET"]
    assert init["DOCKER_INFLUXDB_INIT_RETENTION"].startswith("${PGHD_RAW_RETENTION")
    token = INTERPOLATION.match(init["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"])
    assert token is not None
    assert processors["PGHD_INFLUX_TOKEN"].startswith("${" + token.group(1))
    mounts = dict(v.split(":")[:2] for v in services["influxdb"]["volumes"])
    for source in mounts:
        if source.startswith("./"):
            assert (ROOT / source).is_dir(), source
    assert any(Path(s).name == "tasks" for s in mounts), "downsampling tasks mounted"


def test_grafana_is_provisioned_without_anonymous_access(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]
    env = _env(grafana)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"


def test_grafana_reads_influxdb_with_the_read_only_token_never_the_admin_one(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana, maker = services["grafana"], services["grafana-token"]
    # No admin token anywhere in Grafana's environment.
    assert not any("INFLUXDB_TOKEN" in f"{k}={v}" for k, v in _env(grafana).items())
    datasource = (ROOT / "deploy/grafana/provisioning/datasources/influxdb.yaml").read_text()
    (path,) = re.findall(r"token: \$__file\{([^}]+)\}", datasource)
    # The file is in a named volume that Grafana mounts read-only ...
    mounts = {v.split(":")[1]: v.split(":") for v in grafana["volumes"]}
    volume, _, mode = mounts[str(Path(path).parent)]
    assert volume in {"grafana-influxdb-token"} and mode == "ro"
    # ... and the grafana-token service writes, before Grafana starts.
    assert grafana["depends_on"]["grafana-token"] == {"condition": "service_completed_successfully"}
    maker_mounts = dict(v.split(":")[:2] for v in maker["volumes"])
    command = maker["command"]
    assert command[:3] == ["pghd", "influx", "grafana-token"]
    out = command[command.index("--out") + 1]
    assert maker_mounts[volume] == str(Path(out).parent)
    assert Path(out).name == Path(path).name
    assert (
        command[command.index("--bucket") + 1]
        == _env(services["influxdb"])["DOCKER_INFLUXDB_INIT_BUCKET"]
    )
    maker_env = _env(maker)
    assert maker_env["PGHD_INFLUX_URL"] == "http://influxdb:8086"
    assert maker_env["PGHD_INFLUX_ORG"] == _env(services["influxdb"])["DOCKER_INFLUXDB_INIT_ORG"]
    result = CliRunner().invoke(app, [*command[1:3], "--help"])
    assert result.exit_code == 0, result.output
    for option in command[3::2]:
        assert option in result.output, option
    # The image makes the directory its user writes the token into (a new named volume
    # takes the ownership of the directory it is mounted on).
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert str(Path(out).parent) in dockerfile


def test_prometheus_scrapes_the_services_that_expose_metrics(
    services: dict[str, dict[str, Any]],
) -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    targets = {
        t
        for job in config["scrape_configs"]
        for sc in job.get("static_configs", [])
        for t in sc["targets"]
    }
    assert {"ingest:8000", "care-api:8001"} <= targets
    for target in targets:
        host, port = target.split(":")
        assert host in services, target
        assert _port(host, services[host]) == int(port), target


def test_topics_job_runs_a_real_command(services: dict[str, dict[str, Any]]) -> None:
    command = services["topics"]["command"]
    assert command[:3] == ["pghd", "topics", "apply"]
    result = CliRunner().invoke(app, [*command[1:3], "--help"])
    assert result.exit_code == 0, result.output
    for option in command[3::2]:
        assert option in result.output, option


INFLUX_VARIABLES = {"PGHD_INFLUX_URL", "PGHD_INFLUX_TOKEN", "PGHD_INFLUX_ORG", "PGHD_INFLUX_BUCKET"}


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_a_service_that_reads_influxdb_is_told_where_it_is(
    services: dict[str, dict[str, Any]], service: str
) -> None:
    """Ingest (exports) and the care-team API (/v1/me, /fhir) read InfluxDB: without the
    variables they would answer those routes 503 in compose."""
    if "influx_token" not in SETTINGS[service].model_fields:
        return
    assert set(_env(services[service])) >= INFLUX_VARIABLES, service
