"""A real Apache Kafka broker (KRaft, one node) run from Maven Central jars, no Docker.

``ensure_kafka_libs(root)`` resolves ``deploy/local/pom.xml`` into
``<root>/.local/kafka/<version>/libs`` (Maven's repository in ``<root>/.local/m2``, so CI
can cache both), once. ``KafkaServer`` writes ``server.properties`` and a log4j config,
formats the storage on first start, runs ``kafka.Kafka`` and waits until a metadata
request through kafka-python succeeds. ``stop()`` and ``start()`` may be repeated: the
broker comes back on the same ports with the same data.

By default the broker is plaintext on loopback (``make run``, the tests). Given a
:class:`BrokerSecurity` it is the broker of ``docker-compose.yml`` instead: the security
settings of ``deploy/kafka/server.properties`` taken as they are (SASL_SSL with SCRAM-SHA-512
for clients, mutual TLS on the controller listener, the ACL authorizer with nothing allowed
by default), only hosts, ports and paths made local; TLS material from
``deploy/kafka/make-certs.sh`` and the broker and admin SCRAM users formatted into the
storage, as ``deploy/kafka/start-broker.sh`` does in Compose.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaAdminClient

from deploy.local import process
from pghd.kafka_security import KafkaSecurity

__all__ = [
    "BROKER_CONFIG",
    "KAFKA_POM",
    "MAKE_CERTS",
    "BrokerSecurity",
    "KafkaServer",
    "ensure_kafka_libs",
    "kafka_healthy",
    "kafka_version",
    "make_certificates",
    "read_properties",
]

logger = logging.getLogger(__name__)

KAFKA_POM = Path(__file__).resolve().parent / "pom.xml"
#: The broker configuration of docker-compose.yml, which the secure local broker runs too.
BROKER_CONFIG = Path(__file__).resolve().parents[1] / "kafka" / "server.properties"
#: Makes a CA, the broker's key store and trust store, and the CA certificate in PEM.
MAKE_CERTS = Path(__file__).resolve().parents[1] / "kafka" / "make-certs.sh"
#: Kafka's SCRAM mechanism for the users formatted into the storage.
SCRAM = "SCRAM-SHA-512"
_JAVA_HINT = "Install a Java runtime >= 17, e.g. `apt-get install openjdk-17-jre-headless`."
_MVN_HINT = "Install Maven to fetch the Kafka jars once, e.g. `apt-get install maven`."
_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def kafka_version(pom: Path = KAFKA_POM) -> str:
    """The ``kafka_2.13`` version that ``pom`` pins (the single source of the version)."""
    tree = ET.parse(pom)
    for dep in tree.getroot().iterfind("m:dependencies/m:dependency", _POM_NS):
        if dep.findtext("m:artifactId", namespaces=_POM_NS) == "kafka_2.13":
            version = dep.findtext("m:version", namespaces=_POM_NS)
            if version:
                return version.strip()
    raise ValueError(f"{pom} declares no org.apache.kafka:kafka_2.13 dependency")


def ensure_kafka_libs(root: Path, *, progress: Callable[[str], None] = logger.info) -> Path:
    """Return the directory of Kafka's runtime jars, resolving them with Maven on first use."""
    version = kafka_version()
    home = root / ".local" / "kafka" / version
    libs = home / "libs"
    stamp = home / ".installed"
    digest = hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()
    with process.file_lock(home.parent / f"{version}.lock"):
        if stamp.is_file() and stamp.read_text().strip() == digest and libs.is_dir():
            return libs
        mvn = process.require_tool("mvn", _MVN_HINT)
        process.require_tool("java", _JAVA_HINT)
        progress(f"==> fetching Kafka {version} jars from Maven Central (first run only, ~1 min)")
        staging = home / "staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        shutil.copy2(KAFKA_POM, staging / "pom.xml")
        argv = [
            mvn,
            "-q",
            "-B",
            f"-Dmaven.repo.local={root / '.local' / 'm2'}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging / 'libs'}",
            "-DincludeScope=runtime",
        ]
        result = subprocess.run(argv, cwd=staging, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not any((staging / "libs").glob("kafka_2.13-*.jar")):
            raise RuntimeError(
                f"fetching the Kafka jars failed (exit {result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        shutil.rmtree(libs, ignore_errors=True)
        (staging / "libs").rename(libs)
        shutil.rmtree(staging, ignore_errors=True)
        stamp.write_text(digest + "\n")
        progress(f"    {len(list(libs.glob('*.jar')))} jars in {libs}")
        return libs


def read_properties(path: Path) -> dict[str, str]:
    """The ``key=value`` lines of a Java properties file (comments and blank lines skipped;
    the files here use no continuation lines or escapes)."""
    settings: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}: not a key=value line: {line!r}")
        settings[key.strip()] = value.strip()
    return settings


def make_certificates(
    broker_dir: Path, ca_dir: Path, *, password: str, san: str = "ip:127.0.0.1,dns:localhost"
) -> None:
    """Run ``deploy/kafka/make-certs.sh`` (keytool): ``broker_dir/broker.p12`` and
    ``truststore.p12`` protected by ``password``, ``ca_dir/ca.crt``; the broker certificate
    names ``san`` (keytool's ``-ext san=`` syntax)."""
    process.require_tool("keytool", _JAVA_HINT)
    env = {**os.environ, "PGHD_KAFKA_SSL_PASSWORD": password, "PGHD_KAFKA_CERT_SAN": san}
    result = subprocess.run(
        ["sh", str(MAKE_CERTS), str(broker_dir), str(ca_dir)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"making the Kafka certificates failed (exit {result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )


@dataclass(frozen=True)
class BrokerSecurity:
    """What a SASL_SSL broker needs: its TLS stores (``tls_dir``: ``broker.p12``,
    ``truststore.p12``), the CA its clients trust, the stores' password, and the passwords of
    the two SCRAM users formatted into its storage (``broker``, ``admin``: super users)."""

    tls_dir: Path
    ca_file: Path
    ssl_password: str = field(repr=False)
    broker_password: str = field(repr=False)
    admin_password: str = field(repr=False)

    @classmethod
    def generate(cls, base: Path) -> BrokerSecurity:
        """New certificates under ``base`` (for 127.0.0.1 and localhost), new passwords."""
        tls_dir, ca_dir = base / "tls", base / "ca"
        password = secrets.token_hex(16)
        make_certificates(tls_dir, ca_dir, password=password)
        return cls(
            tls_dir=tls_dir,
            ca_file=ca_dir / "ca.crt",
            ssl_password=password,
            broker_password=secrets.token_hex(16),
            admin_password=secrets.token_hex(16),
        )

    def client(self, username: str, password: str) -> KafkaSecurity:
        """A client's settings for this broker: SASL_SSL as ``username``."""
        return KafkaSecurity(
            protocol="SASL_SSL",
            mechanism=SCRAM,
            username=username,
            password=password,
            ca_file=str(self.ca_file),
        )

    def admin(self) -> KafkaSecurity:
        """The admin's client settings (a super user: topics, users, ACLs)."""
        return self.client("admin", self.admin_password)

    def broker_env(self) -> dict[str, str]:
        """The broker process's environment for the ``${env:...}`` of its configuration."""
        return {
            "PGHD_KAFKA_SSL_PASSWORD": self.ssl_password,
            "PGHD_KAFKA_BROKER_PASSWORD": self.broker_password,
        }

    def scram_users(self) -> dict[str, str]:
        """The users the storage is formatted with."""
        return {"broker": self.broker_password, "admin": self.admin_password}


def kafka_healthy(
    bootstrap: str, *, timeout: float = 5.0, security: KafkaSecurity | None = None
) -> bool:
    """True when a kafka-python metadata request to ``bootstrap`` succeeds (plaintext unless
    ``security`` says otherwise)."""
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="pghd-health",
            bootstrap_timeout_ms=int(timeout * 1000),
            request_timeout_ms=int(timeout * 1000),
            **(security or KafkaSecurity()).kafka_python(),
        )
    except Exception:
        return False
    try:
        admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        admin.close()


def _listener_names(listeners: str) -> list[str]:
    """The names of ``NAME://host:port,...``."""
    return [item.split("://", 1)[0].strip() for item in listeners.split(",") if item.strip()]


class KafkaServer:
    """One KRaft broker+controller on loopback ports, with its data, config and log."""

    def __init__(
        self,
        *,
        libs_dir: Path,
        data_dir: Path,
        config_dir: Path,
        log_file: Path,
        port: int,
        controller_port: int,
        host: str = process.LOOPBACK,
        heap: str = "512m",
        die_with_parent: bool = False,
        security: BrokerSecurity | None = None,
    ) -> None:
        self.libs_dir = libs_dir
        self.data_dir = data_dir
        self.config_dir = config_dir
        self.log_file = log_file
        self.port = port
        self.controller_port = controller_port
        self.host = host
        self.heap = heap
        # SIGTERM the broker when the thread that started it exits (test fixtures).
        self.die_with_parent = die_with_parent
        self.security = security
        self.process: subprocess.Popen[bytes] | None = None
        self.argv: list[str] = []

    @property
    def bootstrap(self) -> str:
        """``host:port`` for clients."""
        return f"{self.host}:{self.port}"

    @property
    def client_security(self) -> KafkaSecurity:
        """How a client with every right reaches this broker: plaintext, or as its admin."""
        return self.security.admin() if self.security else KafkaSecurity()

    @property
    def properties_file(self) -> Path:
        """The broker's ``server.properties`` (its path also marks the process)."""
        return self.config_dir / "server.properties"

    @property
    def pid(self) -> int | None:
        """Pid of the running broker started by this object, if any."""
        return self.process.pid if self.process and self.process.poll() is None else None

    def server_properties(self) -> str:
        """The broker configuration: one node that is both broker and controller."""
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "group.initial.rebalance.delay.ms": "0",
        }
        if self.security is not None:
            settings.pop("inter.broker.listener.name")
            settings.update(self._secure_settings(self.security))
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def _secure_settings(self, security: BrokerSecurity) -> dict[str, str]:
        """``deploy/kafka/server.properties`` with its hosts, ports and paths made local: the
        client listener (the advertised one) on ``port``, the controller on
        ``controller_port``, both on ``host``."""
        settings = read_properties(BROKER_CONFIG)
        names = _listener_names(settings["listeners"])
        (client,) = _listener_names(settings["advertised.listeners"])
        (controller,) = settings["controller.listener.names"].split(",")
        if sorted(names) != sorted({client, controller}):
            raise ValueError(f"{BROKER_CONFIG}: expected the listeners {client} and {controller}")
        settings.update(
            {
                "listeners": (
                    f"{client}://{self.host}:{self.port},"
                    f"{controller}://{self.host}:{self.controller_port}"
                ),
                "advertised.listeners": f"{client}://{self.host}:{self.port}",
                "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
                "log.dirs": str(self.data_dir),
                "ssl.keystore.location": str(security.tls_dir / "broker.p12"),
                "ssl.truststore.location": str(security.tls_dir / "truststore.p12"),
            }
        )
        return settings

    def _log4j_properties(self) -> str:
        return (
            "log4j.rootLogger=WARN, stdout\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka.server.KafkaServer=INFO\n"
            "log4j.logger.kafka.server.BrokerServer=INFO\n"
        )

    def _java(self, main: str, *args: str) -> list[str]:
        java = process.require_tool("java", _JAVA_HINT)
        return [
            java,
            f"-Xmx{self.heap}",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.config_dir / 'log4j.properties'}",
            "-cp",
            f"{self.libs_dir}/*",
            main,
            *args,
        ]

    def _format_storage(self) -> None:
        if (self.data_dir / "meta.properties").is_file():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        uuid = subprocess.run(
            self._java("kafka.tools.StorageTool", "random-uuid"),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        fmt = self._java(
            "kafka.tools.StorageTool", "format", "-t", uuid, "-c", str(self.properties_file)
        )
        for name, password in self._scram_users().items():
            fmt += ["--add-scram", f"{SCRAM}=[name={name},password={password}]"]
        result = subprocess.run(fmt, capture_output=True, text=True, check=False, env=self._env())
        if result.returncode != 0:
            raise RuntimeError(f"kafka storage format failed:\n{result.stdout}\n{result.stderr}")

    def _scram_users(self) -> Mapping[str, str]:
        return self.security.scram_users() if self.security else {}

    def _env(self) -> dict[str, str]:
        """This process's environment plus what the broker's configuration reads."""
        return {**os.environ, **(self.security.broker_env() if self.security else {})}

    def start(self, *, timeout: float = 90.0) -> None:
        """Start the broker (formatting storage first time) and wait until it serves."""
        if self.pid is not None:
            return
        for port in (self.port, self.controller_port):
            if not process.port_is_free(port, self.host):
                raise RuntimeError(f"cannot start Kafka: {self.host}:{port} is already in use")
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(self.server_properties())
        (self.config_dir / "log4j.properties").write_text(self._log4j_properties())
        self._format_storage()
        self.argv = self._java("kafka.Kafka", str(self.properties_file))
        self.process = process.start_detached(
            self.argv,
            log_file=self.log_file,
            die_with_parent=self.die_with_parent,
            env=self.security.broker_env() if self.security else None,
        )
        try:
            process.wait_for_port(
                self.port,
                host=self.host,
                timeout=timeout,
                process=self.process,
                log_file=self.log_file,
            )
            process.wait_until(
                lambda: kafka_healthy(self.bootstrap, security=self.client_security),
                timeout=timeout,
                what=f"Kafka metadata at {self.bootstrap}",
                process=self.process,
                log_file=self.log_file,
            )
        except BaseException:
            self.stop()
            raise
        logger.info("Kafka %s ready (pid %s)", self.bootstrap, self.process.pid)

    def stop(self, *, timeout: float = 30.0) -> None:
        """Stop the broker (controlled shutdown, SIGKILL after ``timeout``) and reap it."""
        if self.process is None:
            return
        process.stop_process(self.process.pid, timeout=timeout)
        if self.process.poll() is None:
            self.process.wait(timeout=10)
        self.process = None

    def is_running(self) -> bool:
        """True while the broker process started by this object runs."""
        return self.pid is not None
