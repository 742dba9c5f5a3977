"""How every pghd Kafka client authenticates and encrypts, read from the environment once.

The compose and Kubernetes stacks reach Kafka over SASL_SSL: SCRAM-SHA-512 with one Kafka
user per service (the principals of ``deploy/kafka-acls.json``), the broker's certificate
checked against the stack's CA. Local ``make run`` and the tests talk plaintext to a broker
on 127.0.0.1, which is the default here: with ``PGHD_KAFKA_SECURITY_PROTOCOL`` unset (or
``PLAINTEXT``) every builder below adds nothing to a client's arguments.

==================================  =========================================================
``PGHD_KAFKA_SECURITY_PROTOCOL``    ``PLAINTEXT`` (default), ``SASL_SSL``, ``SSL``,
                                    ``SASL_PLAINTEXT``
``PGHD_KAFKA_SASL_MECHANISM``       ``SCRAM-SHA-512`` (default), ``SCRAM-SHA-256``, ``PLAIN``
``PGHD_KAFKA_USERNAME``             the service's Kafka user (``SASL_*`` only)
``PGHD_KAFKA_PASSWORD``             its password, or ``PGHD_KAFKA_PASSWORD_FILE``: a file
                                    holding it (a mounted secret; one trailing newline is
                                    dropped)
``PGHD_KAFKA_CA_FILE``              PEM file of the CA(s) the broker's certificate must chain
                                    to (``SSL``/``SASL_SSL``; default: the system's CAs)
==================================  =========================================================

A setting that the chosen protocol would ignore (a username with ``PLAINTEXT``, a CA file
without TLS) is refused rather than dropped: a half-applied configuration must not pass for
a secured one. TLS always verifies the certificate and the broker's host name
(:func:`ssl.create_default_context`).

One :class:`KafkaSecurity` gives the arguments of each client library: :meth:`~KafkaSecurity.
aiokafka` (``AIOKafkaProducer``/``Consumer``/``Client``), :meth:`~KafkaSecurity.kafka_python`
(``KafkaConsumer``, ``KafkaAdminClient``) and :meth:`~KafkaSecurity.faust` (a Faust app's
``broker_credentials``). :func:`current` is the process's, read once.
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = [
    "ENV_NAMES",
    "MECHANISMS",
    "PROTOCOLS",
    "KafkaSecurity",
    "KafkaSecurityError",
    "aiokafka_kwargs",
    "current",
    "faust_options",
    "kafka_python_kwargs",
]

ENV_PROTOCOL: Final = "PGHD_KAFKA_SECURITY_PROTOCOL"
ENV_MECHANISM: Final = "PGHD_KAFKA_SASL_MECHANISM"
ENV_USERNAME: Final = "PGHD_KAFKA_USERNAME"
ENV_PASSWORD: Final = "PGHD_KAFKA_PASSWORD"
ENV_PASSWORD_FILE: Final = "PGHD_KAFKA_PASSWORD_FILE"
ENV_CA_FILE: Final = "PGHD_KAFKA_CA_FILE"
#: Every variable this module reads (the deployment tests allow them beside the settings').
ENV_NAMES: Final = frozenset(
    {ENV_PROTOCOL, ENV_MECHANISM, ENV_USERNAME, ENV_PASSWORD, ENV_PASSWORD_FILE, ENV_CA_FILE}
)

PROTOCOLS: Final = ("PLAINTEXT", "SASL_SSL", "SSL", "SASL_PLAINTEXT")
MECHANISMS: Final = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
DEFAULT_MECHANISM: Final = "SCRAM-SHA-512"


class KafkaSecurityError(ValueError):
    """The Kafka security settings are incomplete or contradict each other."""


@dataclass(frozen=True)
class KafkaSecurity:
    """The security settings of a Kafka client; ``KafkaSecurity()`` is plaintext."""

    protocol: str = "PLAINTEXT"
    mechanism: str = DEFAULT_MECHANISM
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise KafkaSecurityError(
                f"{ENV_PROTOCOL}={self.protocol!r}: expected one of {', '.join(PROTOCOLS)}"
            )
        if self.sasl:
            if self.mechanism not in MECHANISMS:
                raise KafkaSecurityError(
                    f"{ENV_MECHANISM}={self.mechanism!r}: expected one of {', '.join(MECHANISMS)}"
                )
            if not self.username:
                raise KafkaSecurityError(f"{self.protocol} needs {ENV_USERNAME}")
            if not self.password:
                raise KafkaSecurityError(
                    f"{self.protocol} needs {ENV_PASSWORD} or {ENV_PASSWORD_FILE}"
                )
        elif self.username or self.password:
            raise KafkaSecurityError(
                f"{ENV_USERNAME}/{ENV_PASSWORD} are set but {ENV_PROTOCOL}={self.protocol}"
                " does not authenticate: use SASL_SSL"
            )
        if self.ca_file is not None and not self.tls:
            raise KafkaSecurityError(
                f"{ENV_CA_FILE} is set but {ENV_PROTOCOL}={self.protocol} does not use TLS"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSecurity:
        """The settings in ``env`` (default: ``os.environ``); empty values count as unset.
        Raises :class:`KafkaSecurityError` when they are incomplete or contradictory."""
        source = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = source.get(name, "").strip()
            return value or None

        password = get(ENV_PASSWORD)
        password_file = get(ENV_PASSWORD_FILE)
        if password is not None and password_file is not None:
            raise KafkaSecurityError(f"set {ENV_PASSWORD} or {ENV_PASSWORD_FILE}, not both")
        if password_file is not None:
            try:
                password = Path(password_file).read_text().removesuffix("\n")
            except OSError as exc:
                raise KafkaSecurityError(
                    f"{ENV_PASSWORD_FILE}={password_file}: cannot read it ({exc.strerror})"
                ) from exc
        ca_file = get(ENV_CA_FILE)
        if ca_file is not None and not Path(ca_file).is_file():
            raise KafkaSecurityError(f"{ENV_CA_FILE}={ca_file}: no such file")
        return cls(
            protocol=(get(ENV_PROTOCOL) or "PLAINTEXT").upper(),
            mechanism=(get(ENV_MECHANISM) or DEFAULT_MECHANISM).upper(),
            username=get(ENV_USERNAME),
            password=password or None,
            ca_file=ca_file,
        )

    @property
    def plaintext(self) -> bool:
        """Neither authenticated nor encrypted (the local stack)."""
        return self.protocol == "PLAINTEXT"

    @property
    def sasl(self) -> bool:
        """Whether the client authenticates with SASL."""
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        """Whether the connection is encrypted."""
        return self.protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A context that verifies the broker's certificate (against ``ca_file``, else the
        system's CAs) and host name; None without TLS."""
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=self.ca_file)

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producer, consumer and client."""
        if self.plaintext:
            return {}
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        if self.sasl:
            options["sasl_mechanism"] = self.mechanism
            options["sasl_plain_username"] = self.username
            options["sasl_plain_password"] = self.password
        return options

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's ``KafkaConsumer``, ``KafkaProducer`` and
        ``KafkaAdminClient``."""
        if self.plaintext:
            return {}
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            options["ssl_check_hostname"] = True
            if self.ca_file is not None:
                options["ssl_cafile"] = self.ca_file
        if self.sasl:
            options["sasl_mechanism"] = self.mechanism
            options["sasl_plain_username"] = self.username
            options["sasl_plain_password"] = self.password
        return options

    def faust(self) -> dict[str, Any]:
        """Options for ``faust.App``: ``broker_credentials`` (nothing when plaintext)."""
        import faust

        if self.plaintext:
            return {}
        credentials: Any
        if self.sasl:
            credentials = faust.SASLCredentials(
                username=self.username,
                password=self.password,
                ssl_context=self.ssl_context(),
                mechanism=self.mechanism,
            )
        else:
            credentials = faust.SSLCredentials(self.ssl_context())
        return {"broker_credentials": credentials}

    def describe(self) -> str:
        """For logs: the protocol, and for SASL the mechanism and user (never the password)."""
        text = self.protocol
        if self.sasl:
            text += f" ({self.mechanism}, user {self.username})"
        if self.tls:
            text += f", CA {self.ca_file or 'of the system'}"
        return text


@functools.cache
def current() -> KafkaSecurity:
    """This process's settings, read from the environment on first use and kept."""
    return KafkaSecurity.from_env()


def aiokafka_kwargs() -> dict[str, Any]:
    """:meth:`KafkaSecurity.aiokafka` of :func:`current`."""
    return current().aiokafka()


def kafka_python_kwargs() -> dict[str, Any]:
    """:meth:`KafkaSecurity.kafka_python` of :func:`current`."""
    return current().kafka_python()


def faust_options() -> dict[str, Any]:
    """:meth:`KafkaSecurity.faust` of :func:`current`."""
    return current().faust()
