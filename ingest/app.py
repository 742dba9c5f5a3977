"""The ingest FastAPI application: :func:`create_app` builds it from :class:`IngestSettings`.

The lifespan starts the Kafka gateways (:class:`~pghd.service.producer.KafkaGateway`, which
connect in the background, so the app comes up even when Kafka is down) and the enrollment
service (``ingest/enrollment``: the registry every reading is checked against, followed
from ``pghd.enrollments.v1``), and stops them on shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import pghd
from ingest.api import api_router
from ingest.api.routes.measurements import OPENAPI_SCHEMAS
from ingest.audit import GatewayAuditSink
from ingest.auth import ApiKeyAuthenticator, SourceKeysFile
from ingest.deps import api_key_scheme
from ingest.enrollment import EnrollmentBook, EnrollmentService
from ingest.erasure import AuditReports, Eraser
from ingest.imports import ImportJobs
from ingest.intake import AllowAll, ReadingsGateway
from ingest.metrics import IngestMetrics
from ingest.ratelimit import SourceRateLimiter, document_rate_limits
from ingest.settings import IngestSettings
from ingest.webhooks.signing import ReplayGuard
from pghd import kafka_security
from pghd.access import CredentialBook
from pghd.audit_trail import install_audit_trail
from pghd.export.influx import InfluxExportReader
from pghd.problems import JsonResponse, install_handlers, install_openapi
from pghd.service.http_metrics import RequestObserver
from pghd.service.oidc import verifier_for
from pghd.service.producer import KafkaGateway
from pghd.topics import AUDIT, CARE_PLANS, DLQ
from pghd.watched_file import WatchedJson

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run the Kafka gateway for as long as the app serves."""
    settings: IngestSettings = app.state.settings
    gateway = ReadingsGateway(
        bootstrap=settings.kafka_bootstrap,
        produce_timeout_s=settings.produce_timeout_s,
        connect_timeout_s=settings.connect_timeout_s,
        linger_ms=settings.kafka_linger_ms,
        compression=None if settings.kafka_compression == "none" else settings.kafka_compression,
        envelope=settings.envelope,
    )
    await gateway.start()
    app.state.gateway = gateway
    dlq_gateway = KafkaGateway(
        bootstrap=settings.kafka_bootstrap,
        topic=DLQ,
        produce_timeout_s=settings.produce_timeout_s,
        connect_timeout_s=settings.connect_timeout_s,
        linger_ms=settings.kafka_linger_ms,
        compression="gzip",
        client_id="pghd-ingest-dlq",
    )
    await dlq_gateway.start()
    app.state.dlq_gateway = dlq_gateway
    enrollments, enrollment_gateway = EnrollmentService.for_kafka(
        bootstrap=settings.kafka_bootstrap,
        book=app.state.enrollment_book,
        produce_timeout_s=settings.produce_timeout_s,
        connect_timeout_s=settings.connect_timeout_s,
    )
    await enrollment_gateway.start()
    await enrollments.start()
    app.state.enrollments = enrollments
    audit_gateway = KafkaGateway(
        bootstrap=settings.kafka_bootstrap,
        topic=AUDIT,
        produce_timeout_s=settings.produce_timeout_s,
        connect_timeout_s=settings.connect_timeout_s,
        compression="gzip",
        client_id="pghd-ingest-audit",
    )
    await audit_gateway.start()
    app.state.audit_sink = GatewayAuditSink(audit_gateway)
    care_plans_gateway = KafkaGateway(
        bootstrap=settings.kafka_bootstrap,
        topic=CARE_PLANS,
        produce_timeout_s=settings.produce_timeout_s,
        connect_timeout_s=settings.connect_timeout_s,
        linger_ms=0,
        client_id="pghd-ingest-erasure",
    )
    await care_plans_gateway.start()
    app.state.eraser = Eraser(
        enrollments=enrollments,
        care_plans=care_plans_gateway,
        measurements=gateway,
        reports=AuditReports(
            bootstrap=settings.kafka_bootstrap, connect_timeout_s=settings.connect_timeout_s
        ),
        settle_s=settings.erase_settle_s,
    )
    app.state.support_gateways = {
        "dlq": dlq_gateway,
        "enrollments": enrollment_gateway,
        "audit": audit_gateway,
        "care-plans": care_plans_gateway,
    }
    logger.info(
        "ingest started; kafka at %s, %s",
        settings.kafka_bootstrap,
        kafka_security.current().describe(),
    )
    try:
        yield
    finally:
        await app.state.imports.close()  # running imports end "failed" before Kafka goes
        if app.state.export_store is not None:
            await app.state.export_store.close()
        app.state.gateway = app.state.enrollments = app.state.audit_sink = None
        app.state.eraser = None
        app.state.support_gateways = {}
        await care_plans_gateway.stop()
        await audit_gateway.stop()
        await enrollments.stop()
        await enrollment_gateway.stop()
        app.state.dlq_gateway = None
        await dlq_gateway.stop()
        await gateway.stop()
        logger.info("ingest stopped")


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    """Build the ingest app; settings come from the environment when not given."""
    settings = settings if settings is not None else IngestSettings()
    app = FastAPI(
        title="pghd ingest",
        version=pghd.__version__,
        summary="Webhooks that take patient-generated health readings into Kafka",
        lifespan=lifespan,
        default_response_class=JsonResponse,
    )
    metrics = IngestMetrics()
    app.state.settings = settings
    app.state.metrics = metrics
    keys_file = (
        None
        if settings.api_keys_file is None
        else WatchedJson(
            settings.api_keys_file, SourceKeysFile, recheck_s=settings.credentials_recheck_s
        )
    )
    app.state.authenticator = ApiKeyAuthenticator(settings.api_keys, keys_file=keys_file)
    app.state.gateway = None
    app.state.dlq_gateway = None
    app.state.support_gateways = {}
    app.state.imports = ImportJobs()
    app.state.replay_guard = ReplayGuard(capacity=settings.webhook_replay_capacity)
    app.state.enrollment_book = EnrollmentBook()
    app.state.enrollments = None
    app.state.eraser = None
    app.state.audit_sink = None
    app.state.export_store = _export_store(settings)
    app.state.admin_credentials = CredentialBook(
        settings.users_file,
        fixed=settings.admin_tokens,
        recheck_s=settings.credentials_recheck_s,
    )
    app.state.oidc = verifier_for(settings.oidc, metrics.jwks_fetches)
    app.state.registry = app.state.enrollment_book if settings.consent == "enforce" else AllowAll()
    if settings.consent == "off":
        logger.warning(
            "CONSENT IS OFF (PGHD_INGEST_CONSENT=off): readings of ANY patient are stored "
            "without enrollment or consent; for local trials only, never with real patients"
        )
    app.state.rate_limiter = SourceRateLimiter(
        default=settings.rate_limit, overrides=settings.rate_limits, metrics=metrics
    )
    if not app.state.authenticator.configured:
        logger.warning(
            "no API keys configured (PGHD_INGEST_API_KEYS): every request will be refused"
        )
    install_handlers(app)
    install_audit_trail(
        app, service="ingest", prefix="/v1/patients", retry_after_s=settings.retry_after_s
    )
    app.add_middleware(RequestObserver, requests=metrics.requests, request_ids=True)
    app.include_router(api_router)
    install_openapi(
        app,
        schemas=OPENAPI_SCHEMAS,  # what hand-parsed request bodies refer to
        customize=lambda schema: document_rate_limits(schema, scheme=api_key_scheme.scheme_name),
    )
    return app


def _export_store(settings: IngestSettings) -> InfluxExportReader | None:
    """The reader of patient exports, or None (exports answer 503) without an InfluxDB token."""
    if settings.influx_token is None:
        return None
    return InfluxExportReader(
        url=settings.influx_url,
        token=settings.influx_token.get_secret_value(),
        org=settings.influx_org,
        bucket=settings.influx_bucket,
        timeout_s=settings.influx_timeout_s,
    )
