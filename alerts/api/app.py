"""The care-team API application: :func:`create_app` builds it from :class:`CareApiSettings`.

The lifespan starts the command producer and the follower of the read model's topics (both
from :mod:`pghd.service`; both connect in the background, so the app comes up even when Kafka
is down) and stops them on shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import pghd
from alerts.api.audit_log import KafkaAuditSink
from alerts.api.commands import KafkaCommandProducer
from alerts.api.metrics import CareApiMetrics
from alerts.api.patient_tokens import EnrolledPatientTokens
from alerts.api.patient_view import store_for
from alerts.api.read_model import FOLLOWED, ReadModel
from alerts.api.routes import api_router, fhir
from alerts.api.settings import CareApiSettings
from pghd import kafka_security
from pghd.access import CredentialBook
from pghd.alerting import RoutingConfig
from pghd.audit_trail import install_audit_trail
from pghd.fhir_read.influx import InfluxObservationReader
from pghd.problems import JsonResponse, install_handlers, install_openapi
from pghd.service.follower import CompactedFollower
from pghd.service.http_metrics import RequestObserver
from pghd.service.oidc import verifier_for

__all__ = ["create_app", "load_routing"]

logger = logging.getLogger(__name__)

_DESCRIPTION = """\
Care teams list alerts and act on them. Authenticate with `Authorization: Bearer <token>`
(tokens configured as SHA-256 digests in the users file `PGHD_CARE_API_USERS_FILE`, with
each user's role and care teams, or, where an identity provider is configured, its signed
JWTs naming the role and teams; separate from the device sources' API keys). A viewer
reads, a clinician also acknowledges, resolves, silences and sets care plans, both only for
the patients assigned to their teams (`403` otherwise); an admin reaches every patient.
Every request to a `/v1/` route appends an audit event (who, role, teams, operation,
patients, outcome, request id) to `pghd.audit.v1` before it is answered (`503` when it
cannot be written); admins read them at `GET /v1/audit`. Alerts are read from the compacted
`pghd.alerts.v1` topic; actions are written as commands to `pghd.alert-commands.v1` (key =
patient id) and answered `202` once Kafka acknowledged them; the alerts worker applies them
and the new alert state shows here shortly after. Clinical systems read patients' readings
(vital-signs Observations from InfluxDB) and alerts (Flags) through the FHIR R4 read API
under `/fhir` (`/fhir/metadata` says what it serves), with the same tokens, team checks and
audit. Silences are not on the alerts topic: `GET
/v1/silences` lists those found in the commands topic (any instance's, within its retention)
and those this process issued, of enrolled patients only (none of an erased patient).
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run the producer and the topic follower for as long as the app serves."""
    settings: CareApiSettings = app.state.settings
    producer = KafkaCommandProducer(
        bootstrap=settings.kafka_bootstrap,
        client_id="pghd-care-api",
        produce_timeout_s=settings.produce_timeout_s,
        connect_timeout_s=settings.connect_timeout_s,
    )
    model: ReadModel = app.state.read_model
    metrics: CareApiMetrics = app.state.metrics
    follower = CompactedFollower(
        bootstrap=settings.kafka_bootstrap,
        topics=FOLLOWED,
        model=model,
        apply=lambda tp, record: model.apply_record(tp.topic, record.key, record.value),
        client_id="pghd-care-api",
        connect_timeout_s=settings.connect_timeout_s,
        on_ready=lambda: logger.info("read model ready: %d alerts", len(model.alerts)),
        on_record=lambda topic, outcome: metrics.records.labels(topic=topic, outcome=outcome).inc(),
    )
    await producer.start()
    await follower.start()
    app.state.producer = producer
    app.state.audit_sink = KafkaAuditSink(producer)
    logger.info(
        "care-team API started; kafka at %s, %s",
        settings.kafka_bootstrap,
        kafka_security.current().describe(),
    )
    try:
        yield
    finally:
        app.state.producer = None
        app.state.audit_sink = None
        await follower.stop()
        await producer.stop()
        if app.state.fhir_store is not None:
            await app.state.fhir_store.close()
        if app.state.patient_view is not None:
            await app.state.patient_view.close()
        logger.info("care-team API stopped")


def load_routing(settings: CareApiSettings) -> RoutingConfig | None:
    """The routing config named by the settings, if any (only its team map is used here)."""
    if settings.routing_file is None:
        return None
    return RoutingConfig.model_validate_json(settings.routing_file.read_bytes())


def _fhir_store(settings: CareApiSettings) -> InfluxObservationReader | None:
    """The reader of the FHIR read API's Observations, or None (searches answer 503)
    without an InfluxDB token."""
    if settings.influx_token is None:
        return None
    return InfluxObservationReader(
        url=settings.influx_url,
        token=settings.influx_token.get_secret_value(),
        org=settings.influx_org,
        bucket=settings.influx_bucket,
        timeout_s=settings.influx_timeout_s,
    )


def create_app(settings: CareApiSettings | None = None) -> FastAPI:
    """Build the care-team API; settings come from the environment when not given."""
    settings = settings if settings is not None else CareApiSettings()
    app = FastAPI(
        title="pghd care-team API",
        version=pghd.__version__,
        summary="List alerts, acknowledge, resolve and silence them",
        description=_DESCRIPTION,
        lifespan=lifespan,
        default_response_class=JsonResponse,
    )
    model = ReadModel()
    metrics = CareApiMetrics(model)
    app.state.settings = settings
    app.state.read_model = model
    app.state.metrics = metrics
    app.state.credentials = CredentialBook(
        settings.users_file,
        fixed=settings.tokens,
        recheck_s=settings.users_recheck_s,
        on_reload=lambda outcome: metrics.users_reloads.labels(outcome=outcome).inc(),
    )
    app.state.oidc = verifier_for(settings.oidc, metrics.jwks_fetches)
    app.state.routing = load_routing(settings)
    app.state.fhir_store = _fhir_store(settings)
    app.state.producer = None
    app.state.audit_sink = None
    app.state.patient_tokens = EnrolledPatientTokens(model, retry_after_s=settings.retry_after_s)
    app.state.patient_view = store_for(settings)
    if app.state.oidc is not None:
        logger.info(
            "bearer JWTs of %s (audience %s) accepted beside the users file's tokens",
            settings.oidc.issuer,
            settings.oidc.audience,
        )
    if not app.state.credentials.configured and app.state.oidc is None:
        logger.warning(
            "no users configured (PGHD_CARE_API_USERS_FILE, PGHD_CARE_API_TOKENS):"
            " every request is refused"
        )
    elif settings.tokens:
        logger.warning(
            "PGHD_CARE_API_TOKENS holders are admins (every patient); give people a role and"
            " teams in PGHD_CARE_API_USERS_FILE instead"
        )
    install_handlers(app)
    fhir.install_errors(app)  # OperationOutcomes under /fhir for errors no route sees
    install_audit_trail(
        app,
        service="care-api",
        prefix=("/v1/", f"{fhir.PREFIX}/"),
        public=fhir.PUBLIC,
        retry_after_s=settings.retry_after_s,
        refusal=fhir.audit_refusal,
    )
    app.add_middleware(RequestObserver, requests=metrics.requests)
    app.include_router(api_router)
    install_openapi(app)
    return app
