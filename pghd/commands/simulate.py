"""``pghd simulate``: post a synthetic cohort to the ingest API, in time order, in batches.

The cohort comes from :func:`pghd.simulation.generate_cohort` (pure); this module is the I/O:
HTTP with httpx, pacing, retries, a progress bar and the summary. A batch refused with 503
(Kafka down) or 429 is retried as is after ``Retry-After``: same event ids, so the retry
cannot duplicate readings downstream. The period ends at ``--end`` (default: now): with the
same ``--end``, ``--seed`` and sizes the cohort is the same, whenever the command runs.

``--patient-app PORT`` plays one patient's app meanwhile (:mod:`pghd.commands.patient_app`):
registered at the care-team API with ``--patient-token``, it verifies and prints every
feedback event it is sent, and keeps listening ``--patient-app-wait`` seconds after the last
batch (findings come once the readings are judged).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from tqdm import tqdm

from pghd.commands.patient_app import PatientApp, PatientAppError, patient_app
from pghd.commands.patients import ApiRefused, enroll_cohort
from pghd.feedback.events import SENT_KINDS
from pghd.feedback.wording import Kind
from pghd.simulation import Cohort, generate_cohort

__all__ = [
    "ApiUnavailable",
    "Tally",
    "parse_end",
    "post_readings",
    "simulate",
    "tally_response",
]

log = logging.getLogger(__name__)

MEASUREMENTS_PATH = "/v1/measurements"
MAX_RETRIES = 30
MAX_WAIT = 60.0


class ApiUnavailable(RuntimeError):
    """The ingest API could not be reached or keeps refusing; the message says why."""


@dataclass
class Tally:
    """What happened to the readings posted so far."""

    posted: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    retries: int = 0


def _reason(errors: Any) -> str:
    """A short category for one rejected item: the fields at fault, never the values."""
    fields = sorted(
        {str(e.get("field") or "item") for e in errors if isinstance(e, dict)}
        if isinstance(errors, list)
        else set()
    )
    return "invalid " + ",".join(fields) if fields else "rejected"


def _errors_by_item(errors: list[Any]) -> list[list[Any]]:
    """Item errors with JSON pointers (``/3/value``) grouped by the item they point into."""
    by_item: dict[str, list[Any]] = {}
    for error in errors:
        pointer = error.get("pointer", "") if isinstance(error, dict) else ""
        by_item.setdefault(str(pointer).split("/")[1] if "/" in str(pointer) else "", []).append(
            error
        )
    return list(by_item.values())


def tally_response(status: int, body: Any, size: int) -> tuple[int, list[str]]:
    """Accepted count and one reason per rejected item, from the answer to a batch of ``size``.

    Reads ingest's answer ``{"accepted": n, "rejected": m, "items": [{"index", "status",
    "errors"}...]}`` and its problem+json refusals whose ``errors`` point into the body
    (``/3/value``). On a 4xx nothing counts as accepted unless the body says so; items the
    body does not name count as refused with their batch.
    """
    accepted: int | None = None
    reasons: list[str] = []
    if isinstance(body, dict):
        if isinstance(body.get("accepted"), int):
            accepted = body["accepted"]
        items = body.get("items")
        if isinstance(items, list):
            reasons = [
                _reason(item.get("errors"))
                for item in items
                if isinstance(item, dict) and item.get("status") == "rejected"
            ]
        elif isinstance(body.get("errors"), list):
            reasons = [_reason(errors) for errors in _errors_by_item(body["errors"])]
        elif isinstance(body.get("rejected"), int):
            reasons = ["rejected"] * body["rejected"]
    if accepted is None:
        accepted = 0 if status >= 400 else max(0, size - len(reasons))
    if status >= 400:
        reasons += [f"refused with its batch (HTTP {status})"] * (size - accepted - len(reasons))
    return accepted, reasons


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    detail = body.get("detail") if isinstance(body, dict) else None
    return f": {detail}" if isinstance(detail, str) else ""


def _retry_after(response: httpx.Response, fallback: float) -> float:
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            seconds = fallback
    return min(MAX_WAIT, max(0.0, seconds))


def _post_batch(
    client: httpx.Client,
    batch: list[dict[str, Any]],
    *,
    tally: Tally,
    sleep: Callable[[float], None],
) -> None:
    """Post one batch until the API has answered it (retrying 503/429/5xx and transport errors)."""
    for attempt in range(MAX_RETRIES + 1):
        backoff = min(MAX_WAIT, 0.5 * 2**attempt)
        try:
            response = client.post(MEASUREMENTS_PATH, json=batch)
        except httpx.TransportError as exc:
            if tally.posted == 0 or attempt >= 4:
                raise ApiUnavailable(f"cannot reach {client.base_url}: {exc}") from exc
            log.warning("transport error, retrying batch in %.1fs", backoff)
            tally.retries += 1
            sleep(backoff)
            continue
        status = response.status_code
        if status in (429, 503) or status >= 500:
            wait = _retry_after(response, backoff) if status in (429, 503) else backoff
            log.warning("ingest answered %d, retrying batch in %.1fs", status, wait)
            tally.retries += 1
            sleep(wait)
            continue
        if status in (401, 403):
            raise ApiUnavailable(f"ingest refused the API key (HTTP {status}); check --api-key")
        if status in (404, 405, 413):
            raise ApiUnavailable(
                f"ingest answered HTTP {status} to POST {MEASUREMENTS_PATH}{_detail(response)}"
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        accepted, reasons = tally_response(status, body, len(batch))
        tally.posted += len(batch)
        tally.accepted += accepted
        tally.rejected.update(reasons)
        return
    raise ApiUnavailable(f"ingest kept refusing a batch after {MAX_RETRIES} retries")


def post_readings(
    readings: Iterable[dict[str, Any]],
    *,
    client: httpx.Client,
    batch_size: int = 500,
    speed: float = 0.0,
    tally: Tally | None = None,
    on_posted: Callable[[int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Tally:
    """Post time-ordered ``readings`` in batches; with ``speed`` > 0, pace them.

    ``speed`` is simulated seconds per real second: a reading is sent no earlier than
    ``(its time - first reading's time) / speed`` seconds after the start. ``0`` sends as fast
    as the API takes them. Raises :class:`ApiUnavailable` when the API cannot be reached.
    """
    tally = tally or Tally()
    batch: list[dict[str, Any]] = []
    first: datetime | None = None
    started = clock()

    def flush() -> None:
        if batch:
            _post_batch(client, batch, tally=tally, sleep=sleep)
            if on_posted is not None:
                on_posted(len(batch))
            batch.clear()

    for reading in readings:
        if speed > 0:
            when = datetime.fromisoformat(reading["effective_time"])
            first = first or when
            if (when - first).total_seconds() / speed > clock() - started:
                flush()
                sleep(max(0.0, (when - first).total_seconds() / speed - (clock() - started)))
        batch.append(reading)
        if len(batch) >= batch_size:
            flush()
    flush()
    return tally


def _summary(tally: Tally, cohort: Cohort, elapsed: float) -> str:
    kinds = Counter(e.kind.value for e in cohort.episodes)
    lines = [
        f"posted    {tally.posted} readings in {elapsed:.1f}s "
        f"({tally.posted / max(elapsed, 1e-9):.0f}/s), {tally.retries} retried batches",
        f"accepted  {tally.accepted}",
        f"rejected  {sum(tally.rejected.values())}",
        *(f"  {n:>7}  {reason}" for reason, n in tally.rejected.most_common()),
        f"episodes  {len(cohort.episodes)} in {len(cohort.patients)} patients",
        *(f"  {n:>7}  {kind}" for kind, n in sorted(kinds.items())),
    ]
    return "\n".join(lines)


def write_labels(cohort: Cohort, path: Path) -> None:
    """Write the cohort's episode labels as JSON."""
    document = {
        "seed": cohort.seed,
        "start": cohort.start.isoformat(),
        "end": cohort.end.isoformat(),
        "patients": [p.patient_id for p in cohort.patients],
        "episodes": [e.model_dump(mode="json") for e in cohort.episodes],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def parse_end(value: str) -> datetime:
    """``--end``: an ISO-8601 time; without an offset it is UTC."""
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO-8601 time such as 2026-11-25T12:00:00Z"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _enroll(url: str, token: str, consents: dict[str, set[str]], source: str) -> None:
    """Enroll the cohort through the patients API, with consent to the metrics it posts,
    linked to ``source`` (the API key's source: a source writes only for linked patients)."""
    headers = {"Authorization": f"Bearer {token}", "User-Agent": "pghd-simulator"}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=30.0) as client:
            enrolled = enroll_cohort(client, consents, source=source)
    except ApiRefused as exc:
        typer.echo(f"error: cannot enroll the cohort: {exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"enrolled  {enrolled} new patients ({len(consents)} in the cohort) with consent")


@contextlib.contextmanager
def _maybe_patient_app(
    port: int | None, *, care_api_url: str, token: str, kinds: list[Kind]
) -> Iterator[PatientApp | None]:
    """The patient's app for the ``with`` block when ``--patient-app`` was given."""
    if port is None:
        yield None
        return
    if not token:
        typer.echo("error: --patient-app needs the patient's own token (--patient-token)", err=True)
        raise typer.Exit(code=2)
    try:
        with patient_app(
            port=port, care_api_url=care_api_url, token=token, kinds=kinds, echo=tqdm.write
        ) as app:
            yield app
    except (PatientAppError, OSError) as exc:
        typer.echo(f"error: patient app: {exc}", err=True)
        raise typer.Exit(code=1) from None


def _app_summary(app: PatientApp) -> str:
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(app.received.items())) or "none"
    return (
        f"patient app {app.patient_id}: {sum(app.received.values())} events ({kinds}),"
        f" {app.repeats} repeats dropped, {app.refused} deliveries refused"
    )


def simulate(
    api_key: Annotated[
        str, typer.Option("--api-key", envvar="PGHD_API_KEY", help="ingest API key (X-API-Key)")
    ],
    patients: Annotated[int, typer.Option(min=1, help="patients in the cohort")] = 10,
    days: Annotated[float, typer.Option(min=0.01, help="days of data, ending at --end")] = 7.0,
    end: Annotated[
        datetime | None,
        typer.Option(
            parser=parse_end,
            metavar="ISO-8601",
            help="end of the simulated period, UTC unless it gives an offset, e.g. "
            "2026-11-25T12:00:00Z (default: now); the same --end and --seed, the same readings",
            show_default=False,
        ),
    ] = None,
    speed: Annotated[
        float, typer.Option(min=0.0, help="simulated seconds per real second; 0 = no pacing")
    ] = 0.0,
    url: Annotated[str, typer.Option(help="ingest base URL")] = "http://127.0.0.1:8000",
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="readings per request")] = 500,
    seed: Annotated[int, typer.Option(help="random seed; same seed, same cohort")] = 1,
    episodes_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="share of patients with an episode")
    ] = 0.3,
    labels_out: Annotated[
        Path | None, typer.Option(help="write the episode labels here as JSON")
    ] = None,
    admin_token: Annotated[
        str,
        typer.Option(
            "--admin-token",
            envvar="PGHD_ADMIN_TOKEN",
            help="enroll the cohort first (consent to its metrics) with this admin token",
            show_default=False,
        ),
    ] = "",
    source: Annotated[
        str,
        typer.Option(
            "--source",
            envvar="PGHD_SOURCE",
            help="the source (vendor) name the API key belongs to; with --admin-token, the"
            " cohort is linked to it, since a source writes only for patients linked to it",
        ),
    ] = "demo",
    oracle_context: Annotated[
        bool,
        typer.Option(
            "--oracle-context",
            help="label every reading with the true context (sleep/rest/activity), which no "
            "real device sends; by default only an Apple-Watch-like watch's motion context",
        ),
    ] = False,
    patient_app_port: Annotated[
        int | None,
        typer.Option(
            "--patient-app",
            metavar="PORT",
            min=0,
            max=65535,
            help="play a patient's app on 127.0.0.1:PORT (0: any free port): register it for"
            " feedback with --patient-token, verify and print each event it is sent",
            show_default=False,
        ),
    ] = None,
    patient_token: Annotated[
        str,
        typer.Option(
            "--patient-token",
            envvar="PGHD_PATIENT_TOKEN",
            help="the patient's own token (the app registers with it at the care-team API)",
            show_default=False,
        ),
    ] = "",
    care_api_url: Annotated[
        str, typer.Option("--care-api-url", help="care-team API base URL (for --patient-app)")
    ] = "http://127.0.0.1:8001",
    patient_app_kinds: Annotated[
        list[Kind] | None,
        typer.Option(
            "--patient-app-kind",
            help="a kind of feedback the patient consents to (repeat it; default: every kind sent)",
            show_default=False,
        ),
    ] = None,
    patient_app_wait: Annotated[
        float,
        typer.Option(
            min=0.0, help="seconds the app keeps listening after the last batch was posted"
        ),
    ] = 60.0,
) -> None:
    """Post a simulated cohort to the ingest API (POST /v1/measurements), in arrival order."""
    cohort = generate_cohort(
        patients=patients,
        days=days,
        end=end or datetime.now(UTC),
        seed=seed,
        episodes_fraction=episodes_fraction,
        labels=oracle_context,
    )
    if labels_out is not None:
        write_labels(cohort, labels_out)
    consents: dict[str, set[str]] = {}
    total = 0
    for item in cohort.readings():
        consents.setdefault(str(item["patient_id"]), set()).add(str(item["metric"]))
        total += 1
    if admin_token:
        _enroll(url, admin_token, consents, source)
    tally = Tally()
    headers = {"X-API-Key": api_key, "User-Agent": "pghd-simulator"}
    kinds = sorted(set(patient_app_kinds or SENT_KINDS))
    with _maybe_patient_app(
        patient_app_port, care_api_url=care_api_url, token=patient_token, kinds=kinds
    ) as app:
        started = time.monotonic()
        try:
            with (
                httpx.Client(base_url=url, headers=headers, timeout=30.0) as client,
                tqdm(total=total, unit="reading", desc="posted", dynamic_ncols=True) as bar,
            ):
                post_readings(
                    cohort.readings(),
                    client=client,
                    batch_size=batch,
                    speed=speed,
                    tally=tally,
                    on_posted=bar.update,
                )
        except ApiUnavailable as exc:
            typer.echo(f"error: {exc}", err=True)
            typer.echo(_summary(tally, cohort, time.monotonic() - started), err=True)
            raise typer.Exit(code=1) from None
        except KeyboardInterrupt:
            typer.echo(_summary(tally, cohort, time.monotonic() - started), err=True)
            raise typer.Exit(code=130) from None
        typer.echo(_summary(tally, cohort, time.monotonic() - started))
        if labels_out is not None:
            typer.echo(f"labels    {labels_out}")
        if app is not None:
            typer.echo(f"patient app: listening {patient_app_wait:g} s more for feedback")
            with contextlib.suppress(KeyboardInterrupt):
                time.sleep(patient_app_wait)
            typer.echo(_app_summary(app))
