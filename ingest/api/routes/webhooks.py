"""``/v1/webhooks/{source}``: signed pushes from vendors, and their endpoint handshakes.

``POST`` takes a push signed by the source's scheme (see :mod:`ingest.webhooks.signing`):
a bad or missing signature and a stale timestamp are refused with 401, a replay of a push
already taken with 409 (it is authentic, so 401 would send the operator after the wrong
secret; nothing is stored twice either way), an unknown source with 404. Readings go to
Kafka through :func:`ingest.intake.produce`; items refused for enrollment, consent, an
unknown vendor account or an invalid value go to ``pghd.dlq.v1`` with the reason, because a
vendor cannot fix them and would retry forever: the push is answered 200 with the counts
once Kafka acknowledged both, or 503 with ``Retry-After`` (so the vendor retries) when it
cannot. A signature is remembered by the replay guard only once its push was answered 2xx.

``GET`` answers the handshake the source is configured for: Fitbit-style ``?verify=<code>``
(204 when the code is ours, 404 when not) or a ``hub.challenge`` echo (Strava, Meta).
"""

from __future__ import annotations

import hmac
import logging
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from ingest.adapters.vendor_samples import PayloadError
from ingest.body import parse_json, read_body
from ingest.deps import (
    DlqGatewayDep,
    GatewayDep,
    MetricsDep,
    RateLimiterDep,
    RegistryDep,
    ReplayGuardDep,
    SettingsDep,
)
from ingest.intake import Registry, produce, triage
from ingest.metrics import IngestMetrics
from ingest.settings import IngestSettings
from ingest.webhooks import push
from ingest.webhooks.config import Handshake, WebhookSource
from ingest.webhooks.signing import (
    PGHD_SIGNATURE_HEADER,
    SVIX_ID_HEADER,
    SVIX_SIGNATURE_HEADER,
    SVIX_TIMESTAMP_HEADER,
    TERRA_SIGNATURE_HEADER,
    SignatureRefused,
)
from pghd.problems import JsonResponse, ProblemError, problem_responses
from pghd.service.producer import Gateway, KafkaUnavailable, kafka_unavailable

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

SourcePath = Annotated[
    str, Path(description="The configured webhook source (PGHD_INGEST_WEBHOOKS)")
]


_POST_BODY = {
    "requestBody": {
        "required": True,
        "description": (
            "The source's payload, signed: generic = pghd reading JSON (one or an array) with "
            f"{PGHD_SIGNATURE_HEADER}; terra = a Terra event with {TERRA_SIGNATURE_HEADER}; "
            f"junction = a Junction event with {SVIX_ID_HEADER}, {SVIX_TIMESTAMP_HEADER} and "
            f"{SVIX_SIGNATURE_HEADER} (Svix)"
        ),
        "content": {"application/json": {"schema": {}}},
    }
}

_POST_RESPONSES = problem_responses(
    {
        400: "Body is not JSON",
        401: "Missing, malformed or wrong signature, or a stale signature timestamp",
        404: "No webhook source of that name is configured",
        409: "This signed push was already taken (a replay); nothing was stored again",
        413: "Body larger than allowed",
        415: "Unsupported Content-Encoding",
        422: "The body is not the source's payload shape",
        429: "Too many requests from this source",
        503: "Kafka cannot take writes now; retry after Retry-After seconds",
    }
)


def _source(settings: IngestSettings, name: str) -> WebhookSource:
    config = settings.webhooks.get(name)
    if config is None:
        raise ProblemError(
            status=404,
            slug="unknown-webhook-source",
            detail=f"no webhook source named {name!r} is configured (PGHD_INGEST_WEBHOOKS)",
        )
    return config


@router.post(
    "/{source}",
    summary="Take a signed push from a vendor or app backend",
    response_model=push.PushResult,
    responses=_POST_RESPONSES,
    openapi_extra=_POST_BODY,
)
async def post_webhook(
    request: Request,
    source: SourcePath,
    settings: SettingsDep,
    gateway: GatewayDep,
    dlq: DlqGatewayDep,
    metrics: MetricsDep,
    registry: RegistryDep,
    limiter: RateLimiterDep,
    guard: ReplayGuardDep,
) -> JsonResponse:
    """Verify, rate-limit and de-replay a push, then produce its readings and dead letters."""
    config = _source(settings, source)
    request_id = getattr(request.state, "request_id", "-")
    body = await read_body(request, limit=settings.max_body_bytes)
    tolerance_s = config.tolerance_s or settings.webhook_tolerance_s
    now = time.time()
    try:
        verified = push.verify(config, request.headers, body, now=now, tolerance_s=tolerance_s)
    except SignatureRefused as exc:
        logger.warning("request %s webhook %s refused: %s", request_id, source, exc.slug)
        headers = {"WWW-Authenticate": push.signature_header_of(config.kind)}
        raise ProblemError(
            status=exc.status,
            slug=exc.slug,
            detail=exc.detail,
            headers=headers if exc.status == 401 else None,
        ) from None
    limiter.enforce(source)
    key = f"{source}:{verified.signature}"
    if not guard.reserve(key, expires_at=verified.expires_at(tolerance_s), now=now):
        logger.warning("request %s webhook %s: replayed signature refused", request_id, source)
        raise ProblemError(
            status=409,
            slug="replayed-signature",
            detail=(
                f"replayed signature: this signed push (timestamp {verified.timestamp}) was "
                "already taken; nothing was stored again"
            ),
        )
    try:
        result = await _take(
            body,
            source=source,
            config=config,
            settings=settings,
            gateway=gateway,
            dlq=dlq,
            metrics=metrics,
            registry=registry,
            request_id=request_id,
        )
    except BaseException:
        guard.release(key)  # not taken: the sender's retry of this very push must get through
        raise
    return JsonResponse(result, status_code=200)


async def _take(
    body: bytes,
    *,
    source: str,
    config: WebhookSource,
    settings: IngestSettings,
    gateway: Gateway,
    dlq: Gateway,
    metrics: IngestMetrics,
    registry: Registry,
    request_id: str,
) -> dict[str, Any]:
    document = parse_json(body)
    try:
        extraction = push.extract(config.kind, document, max_batch=settings.max_batch)
    except PayloadError as exc:
        raise ProblemError(
            status=422, slug="invalid-payload", detail=f"{config.kind.value} push: {exc}"
        ) from None
    received_at = datetime.now(UTC)
    outcomes = triage(
        extraction.candidates,
        source=source,
        received_at=received_at,
        registry=registry,
        max_age=settings.max_reading_age,
        metrics=metrics,
    )
    good = [o.measurement for o in outcomes if o.measurement is not None]
    refused = [o for o in outcomes if o.measurement is None]
    await produce(
        gateway, good, metrics=metrics, request_id=request_id, retry_after_s=settings.retry_after_s
    )
    letters = push.dead_letters(
        refused,
        source=source,
        event=extraction.event,
        failed_at=received_at,
        registry=registry,
    )
    if letters:
        try:
            await dlq.send_batch(letters)
        except KafkaUnavailable as exc:  # the vendor retries; its readings dedup by event id
            logger.warning(
                "request %s: %d dead letters not produced: %s", request_id, len(letters), exc
            )
            raise kafka_unavailable(
                f"refused items could not be dead-lettered, retry later: {exc}",
                retry_after_s=settings.retry_after_s,
            ) from exc
    ignored = sum(extraction.ignored.values())
    logger.info(
        "request %s webhook %s event=%s: %d accepted, %d dead-lettered, %d ignored",
        request_id,
        source,
        extraction.event,
        len(good),
        len(refused),
        ignored,
    )
    return {
        "source": source,
        "event": extraction.event,
        "accepted": len(good),
        "dead_lettered": len(refused),
        "ignored": ignored,
        "ignored_kinds": dict(sorted(extraction.ignored.items())),
        "refused": [
            {"pointer": o.candidate.pointer, "reason": o.reason, "errors": o.errors}
            for o in refused
        ],
    }


@router.get(
    "/{source}",
    summary="Endpoint verification handshake (Fitbit ?verify=, or hub.challenge echo)",
    status_code=200,
    responses={
        **problem_responses(
            {
                400: "hub.challenge missing",
                403: "hub.verify_token does not match",
                404: "Unknown source, no handshake, or a Fitbit verify code that is not ours",
            }
        ),
        204: {"description": "Fitbit: the verification code is ours"},
    },
)
async def verify_endpoint(
    source: SourcePath,
    settings: SettingsDep,
    verify: Annotated[str | None, Query(description="Fitbit verification code")] = None,
    hub_mode: Annotated[str | None, Query(alias="hub.mode")] = None,
    hub_verify_token: Annotated[str | None, Query(alias="hub.verify_token")] = None,
    hub_challenge: Annotated[str | None, Query(alias="hub.challenge")] = None,
) -> Response:
    """Answer the handshake the source is configured for."""
    config = _source(settings, source)
    token = config.verify_token or ""
    if config.handshake is Handshake.FITBIT:
        if verify is not None and _same(verify, token):
            return Response(status_code=204)
        raise ProblemError(
            status=404,
            slug="verification-failed",
            detail=f"the verify code does not match the one configured for {source!r}"
            if verify
            else "missing ?verify=<code>",
        )
    if config.handshake is Handshake.HUB:
        if (
            hub_mode != "subscribe"
            or hub_verify_token is None
            or not _same(hub_verify_token, token)
        ):
            raise ProblemError(
                status=403,
                slug="verification-failed",
                detail=(
                    "hub.mode must be 'subscribe'"
                    if hub_mode != "subscribe"
                    else f"hub.verify_token does not match the token configured for {source!r}"
                ),
            )
        if hub_challenge is None:
            raise ProblemError(status=400, slug="missing-challenge", detail="missing hub.challenge")
        return JsonResponse({"hub.challenge": hub_challenge})
    raise ProblemError(
        status=404,
        slug="no-handshake",
        detail=f"webhook source {source!r} has no verification handshake configured",
    )


def _same(presented: str, expected: str) -> bool:
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))
