"""Configuration of the care-team API, read from ``PGHD_CARE_API_*`` environment variables.

``users_file`` names the users file (:mod:`pghd.access`): each user's role (viewer,
clinician, admin), care teams and the SHA-256 digests of their bearer tokens; it is read
again when it changes, so tokens are issued, rotated and revoked without a restart.
``tokens`` is the older form, a JSON map of name -> digest, e.g.
``PGHD_CARE_API_TOKENS='{"ops": "5e88...42"}'``, whose holders are admins (every patient).
There is no default credential: with neither, every request is refused.
``kafka_bootstrap`` falls back to the platform-wide ``PGHD_KAFKA_BOOTSTRAP`` and
``routing_file`` to the alerts worker's ``PGHD_ALERTS_ROUTING_FILE`` (it gives the
patient -> notification team map the ``team`` filter uses). ``max_silence_s`` is the
longest silence anyone may set (policy: a silence hides a patient's alerts from everyone).
``oidc`` says which identity provider's bearer JWTs are accepted beside the users file's
tokens (:mod:`pghd.service.oidc`): ``PGHD_CARE_API_OIDC_*``, each falling back to the
platform-wide ``PGHD_OIDC_*``; unset, none are. ``influx_*`` (falling back to the platform-wide
``PGHD_INFLUX_*``) is where the patients' own routes and the FHIR read API read readings.
``feedback_allow_loopback_http`` (falling back to ``PGHD_FEEDBACK_ALLOW_LOOPBACK_HTTP``, like
the alerts worker's) lets patients register a loopback URL, plain http included, for their
feedback: for local and development stacks only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pghd.access import checked_digests
from pghd.service.oidc import OidcSettings

__all__ = ["ENV_PREFIX", "CareApiSettings"]

ENV_PREFIX = "PGHD_CARE_API_"


class CareApiSettings(BaseSettings):
    """Settings of one care-team API process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", validate_by_name=True, frozen=True
    )

    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices(
            "kafka_bootstrap", f"{ENV_PREFIX}KAFKA_BOOTSTRAP", "PGHD_KAFKA_BOOTSTRAP"
        ),
        description="Kafka bootstrap servers, comma separated host:port",
    )
    users_file: Path | None = Field(
        default=None, description="the users file: roles, teams, token digests (pghd.access)"
    )
    users_recheck_s: Annotated[float, Field(gt=0)] = Field(
        default=1.0, description="how often the users file is checked for changes"
    )
    tokens: dict[str, str] = Field(
        default_factory=dict,
        description="older form: name -> SHA-256 hex digest of a bearer token (an admin)",
    )
    oidc: OidcSettings = Field(
        default_factory=lambda: OidcSettings.from_env(ENV_PREFIX),
        description="the identity provider whose bearer JWTs are accepted (pghd.service.oidc)",
    )
    max_silence_s: Annotated[float, Field(gt=0)] = Field(
        default=7 * 86400.0, description="the longest silence that may be set (seconds)"
    )
    routing_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "routing_file", f"{ENV_PREFIX}ROUTING_FILE", "PGHD_ALERTS_ROUTING_FILE"
        ),
        description="the alerts routing config (JSON); gives the patient -> team map",
    )
    # InfluxDB, read by the patients' own routes (/v1/me) and the FHIR read API (/fhir).
    influx_url: str = Field(
        default="http://127.0.0.1:8086",
        validation_alias=AliasChoices("influx_url", f"{ENV_PREFIX}INFLUX_URL", "PGHD_INFLUX_URL"),
        description="InfluxDB URL, for the readings /v1/me and /fhir serve",
    )
    influx_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "influx_token", f"{ENV_PREFIX}INFLUX_TOKEN", "PGHD_INFLUX_TOKEN"
        ),
        description="InfluxDB token (1.8: user:password), read access suffices; unset: the"
        " routes that read readings answer 503",
    )
    influx_org: str = Field(
        default="-",
        validation_alias=AliasChoices("influx_org", f"{ENV_PREFIX}INFLUX_ORG", "PGHD_INFLUX_ORG"),
    )
    influx_bucket: str = Field(
        default="pghd/autogen",
        validation_alias=AliasChoices(
            "influx_bucket", f"{ENV_PREFIX}INFLUX_BUCKET", "PGHD_INFLUX_BUCKET"
        ),
        description="the bucket the store writes readings to (1.8: database/retention policy)",
    )
    influx_timeout_s: Annotated[float, Field(gt=0)] = Field(
        default=30.0, description="one InfluxDB query"
    )
    fhir_base_url: str | None = Field(
        default=None,
        description="the FHIR read API's public base URL (https://care.example.org/fhir), for"
        " the links of its Bundles and its CapabilityStatement behind a proxy; unset: the"
        " request's own URL",
    )
    feedback_allow_loopback_http: bool = Field(
        default=False,
        validation_alias=AliasChoices(
            "feedback_allow_loopback_http",
            f"{ENV_PREFIX}FEEDBACK_ALLOW_LOOPBACK_HTTP",
            "PGHD_FEEDBACK_ALLOW_LOOPBACK_HTTP",
        ),
        description="a patient's app may take feedback on the loopback, plain http included"
        " (local and development stacks; elsewhere only https to the internet)",
    )
    produce_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    connect_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    retry_after_s: Annotated[int, Field(ge=1)] = 5
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8001
    log_level: str = "info"

    @field_validator("tokens")
    @classmethod
    def _check_tokens(cls, value: dict[str, str]) -> dict[str, str]:
        return checked_digests(value, holder="user", secret="token", secret_name="bearer token")
