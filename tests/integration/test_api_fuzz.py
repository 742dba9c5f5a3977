"""Fuzz every operation of the ingest OpenAPI spec with schemathesis, against the real service.

The real ingest app runs in-process (schemathesis' ASGI transport runs its lifespan, once
per test) against the session's real Kafka; schemathesis loads the spec the app serves and sends
generated requests through the app, for every operation the spec has (new routes are
picked up without editing this file): schema conforming ("positive") and schema breaking
("negative") requests, plus, for
``POST /v1/measurements``, near-valid readings hugging every bound (units, possible ranges,
the time floor and the future limit) that random generation would rarely reach.

Requests carry a valid API key or admin token where the operation declares that security
scheme; operations whose auth cannot be satisfied (signed webhooks) are fuzzed unsigned.
Checks on every response:

- no 5xx (Kafka is up, so not even the 503 that an outage gives);
- status code, content type, headers and body conform to the spec;
- ``POST /v1/measurements``: an item is accepted exactly when the published rules say so
  (consent is off here, so nothing else may refuse it), as an oracle of its own judges them
  (:func:`tests.integration.fuzz_readings.expected_verdict`: the catalogue's table of units,
  conversions and possible ranges, the time floor and the future limit, in simple code
  that does not call ``pghd.readings``); items it cannot decide are counted, not judged;
- at the end, every measurement that landed in ``pghd.measurements.v1`` during the run, from
  whichever route, is valid by that table: canonical unit, inside the possible range, UTC
  time between the floor and ten minutes after it was received.

The run is bounded: ``PGHD_FUZZ_BUDGET_S`` seconds in all (default 150) and at most
``PGHD_FUZZ_MAX_EXAMPLES`` examples per operation and mode (default 100); ``make fuzz``
runs it with a larger budget. The figures are printed at the end.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from kafka import TopicPartition
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.transport import requests as schemathesis_requests

from deploy.local.harness import API_KEY, SOURCE, wait_for
from deploy.local.influxdb import InfluxServer
from ingest.app import create_app
from ingest.auth import hash_key
from ingest.settings import IngestSettings
from tests.integration.fuzz_readings import (
    NEAR_VALID,
    end_offsets,
    expected_verdict,
    landed,
    near_the_future_limit,
    problems_of,
)

BUDGET_S = float(os.environ.get("PGHD_FUZZ_BUDGET_S", "150"))
MAX_EXAMPLES = int(os.environ.get("PGHD_FUZZ_MAX_EXAMPLES", "100"))
ADMIN_TOKEN = "fuzz-admin-token"
WEBHOOK_SOURCES = {
    "fuzz-generic": {"kind": "generic", "secret": "fuzz-generic-secret"},
    "fuzz-hub": {
        "kind": "generic",
        "secret": "fuzz-hub-secret",
        "handshake": "hub",
        "verify_token": "fuzz-verify",
    },
}
MEASUREMENTS = "/v1/measurements"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
]


def _spec_operations() -> list[str]:
    """The operations of the spec, read off the app in-process (to name the tests)."""
    spec = create_app(IngestSettings()).openapi()
    return [
        f"{method.upper()} {path}"
        for path, item in spec["paths"].items()
        for method in item
        if method in {"get", "put", "post", "delete", "patch", "head", "options"}
    ]


OPERATIONS = _spec_operations()


@dataclass
class Stats:
    """What the run did, for the summary and the checks."""

    started: float = field(default_factory=time.monotonic)
    examples: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    judged_items: int = 0
    undecided_items: int = 0
    accepted_items: int = 0
    accepted_event_ids: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)

    weight_left: float = 0.0

    def deadline(self, weight: float) -> float:
        """When a run of ``weight`` must stop: its share of what is left of the budget."""
        left = max(BUDGET_S - (time.monotonic() - self.started), 0.0)
        share = left * weight / max(self.weight_left, weight)
        self.weight_left = max(self.weight_left - weight, 0.0)
        return time.monotonic() + share


@dataclass(frozen=True)
class Run:
    """One fuzzing run of an operation: a mode, optional fixed parts, a share of the budget."""

    mode: GenerationMode
    weight: float = 1.0
    near_valid: bool = False
    path_parameters: dict[str, Any] | None = None
    min_examples: int = 2
    """Examples run even past the budget: a loaded machine must not make the run vacuous,
    nor leave an operation uncalled (on a shared machine under load the budget once ran out
    before the imports operations were reached)."""


def _plan(label: str) -> list[Run]:
    """The runs of one operation; the readings endpoint gets the largest share."""
    readings = label == f"POST {MEASUREMENTS}"
    runs = [
        Run(GenerationMode.POSITIVE, weight=2 if readings else 1),
        Run(GenerationMode.NEGATIVE, weight=2 if readings else 1),
    ]
    if readings:
        runs.append(Run(GenerationMode.POSITIVE, weight=6, near_valid=True, min_examples=40))
    if "{source}" in label:
        runs += [
            Run(GenerationMode.POSITIVE, path_parameters={"source": name})
            for name in WEBHOOK_SOURCES
        ]
    return runs


@dataclass
class Target:
    """The app under test and what the fuzz tests share."""

    app: Any
    kafka_bootstrap: str
    schema: Any
    start_offsets: dict[TopicPartition, int]
    stats: Stats
    fuzzed: set[str] = field(default_factory=set)
    """Operations fuzzed so far (each once per module run)."""

    def fuzz(self, label: str) -> None:
        """Fuzz one operation in all its runs, unless that was done already."""
        if label in self.fuzzed:
            return
        self.fuzzed.add(label)
        _wait_ready(self.app)
        for run in _plan(label):
            _run(self, label, run)


def _auth_headers(operation: Any) -> dict[str, str]:
    """Credentials for the security schemes the operation declares (none it cannot meet)."""
    raw = operation.definition.raw
    schemes = operation.schema.raw_schema.get("components", {}).get("securitySchemes", {})
    headers: dict[str, str] = {}
    for requirement in raw.get("security", []):
        for name in requirement:
            scheme = schemes.get(name, {})
            if scheme.get("type") == "apiKey" and scheme.get("in") == "header":
                headers[scheme["name"]] = API_KEY
            elif scheme.get("type") == "http" and scheme.get("scheme", "").lower() == "bearer":
                headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    return headers


@pytest.fixture(scope="module")
def target(kafka_bootstrap: str, influx: InfluxServer) -> Iterator[Target]:
    """The real ingest app, in-process over ASGI, on the session's real Kafka (and InfluxDB,
    which patient exports read).

    Consent is off (every well-formed reading may be stored, so acceptance is judged by the
    readings rules alone), rate limits are off, and an admin token and two signed webhook
    sources are configured.
    """
    app = create_app(
        IngestSettings(
            kafka_bootstrap=kafka_bootstrap,
            influx_url=influx.url,
            influx_token=influx.token,  # type: ignore[arg-type]
            influx_bucket=influx.bucket,
            api_keys={SOURCE: hash_key(API_KEY)},
            admin_tokens={"fuzz-admin": hash_key(ADMIN_TOKEN)},
            consent="off",
            rate_limit="off",
            erase_settle_s=0,  # no processors run here: an erasure is not waited for long
            erase_max_wait_s=0.5,
            webhooks=WEBHOOK_SOURCES,  # type: ignore[arg-type]
        )
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    assert sorted(_operations(schema)) == sorted(OPERATIONS), "the served spec is not the app's"
    start_offsets = end_offsets(kafka_bootstrap)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            schemathesis_requests,
            "_count_opened_connections",
            _tolerant(schemathesis_requests._count_opened_connections),
        )
        yield from _serve(app, schema, kafka_bootstrap, start_offsets)


def _operations(schema: Any) -> dict[str, Any]:
    """The operations of the loaded spec by label; a part schemathesis cannot read fails."""
    found: dict[str, Any] = {}
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise AssertionError(f"schemathesis cannot read part of the spec: {result.err()}")
        found[result.ok().label] = result.ok()
    return found


def _tolerant(count: Callable[[Any], int]) -> Callable[[Any], int]:
    """schemathesis counts pooled connections through urllib3 internals; grafana-client pulls
    in niquests, whose urllib3-future replaces ``urllib3`` with a pool container that has no
    ``keys()``. The count only decides whether to resend a request on a dropped keep-alive
    connection, which in-process ASGI calls never have."""

    def count_or_zero(session: Any) -> int:
        try:
            return count(session)
        except AttributeError:
            return 0

    return count_or_zero


def _serve(
    app: Any, schema: Any, kafka_bootstrap: str, start_offsets: dict[TopicPartition, int]
) -> Iterator[Target]:
    try:
        yield Target(
            app=app,
            kafka_bootstrap=kafka_bootstrap,
            schema=schema,
            start_offsets=start_offsets,
            stats=Stats(weight_left=sum(r.weight for label in OPERATIONS for r in _plan(label))),
        )
    finally:
        asgi.shutdown_lifespans()


def _wait_ready(app: Any) -> None:
    """Start the app's lifespan (if not running) and wait until it can take readings.

    schemathesis' pytest plugin ends ASGI lifespans after each test, so each test starts
    ingest afresh: its Kafka producers connect in the background, and ``/readyz`` answers
    for the measurements one; the enrollment and DLQ producers connect alongside it.
    """
    with asgi.get_client(app) as client:
        wait_for(
            lambda: True if client.get("/readyz").status_code == 200 else None,
            timeout=60,
            what="ingest /readyz (Kafka connected)",
            every=0.1,
        )
    time.sleep(1.0)


def _check_measurements_response(sent: bytes | None, response: Any, stats: Stats) -> None:
    """Each item was accepted (202) or refused (202 or 422) exactly as the oracle says."""
    if response.status_code not in (202, 422) or not sent:
        return
    result = orjson.loads(response.content)
    if response.status_code == 422 and result.get("type") != "urn:pghd:problem:invalid-readings":
        return  # not a verdict on items (an empty batch, a body that is no reading at all)
    document = orjson.loads(sent)
    items = document if isinstance(document, list) else [document]
    outcomes = result["items"] if response.status_code == 202 else [None] * len(items)
    assert len(outcomes) == len(items)
    now = datetime.now(UTC)
    for item, outcome in zip(items, outcomes, strict=True):
        accepted = outcome is not None and outcome["status"] == "accepted"
        if accepted:
            stats.accepted_event_ids.add(outcome["event_id"])
        if near_the_future_limit(item, now=now):
            continue
        expected = expected_verdict(item, now=now)
        if expected is None:
            stats.undecided_items += 1
            continue
        stats.judged_items += 1
        stats.accepted_items += accepted
        assert accepted == expected, (
            f"ingest {'accepted' if accepted else 'refused'} an item the published rules "
            f"{'refuse' if accepted else 'accept'}: {item!r} -> {outcome or result!r}"
        )


def _run(target: Target, label: str, run: Run) -> None:
    """Fuzz one operation in one mode until its examples or its share of the budget run out."""
    operation = _operations(target.schema)[label]
    stats = target.stats
    deadline = stats.deadline(run.weight)
    headers = _auth_headers(operation)
    mode = run.mode
    body = NEAR_VALID if run.near_valid else None
    key = f"{label} [{mode.value}{' near-valid' if body is not None else ''}]"
    strategy = operation.as_strategy(mode, path_parameters=run.path_parameters)

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(case=strategy, data=st.data())
    def fuzz(case: Any, data: st.DataObject) -> None:
        if body is not None:
            case.body = data.draw(body)  # drawn first: the same draws whatever the time
        if time.monotonic() > deadline and stats.examples[key] >= run.min_examples:
            return
        stats.examples[key] += 1
        response = case.call(headers=headers)
        stats.statuses.setdefault(label, Counter())[response.status_code] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)
        if operation.path == MEASUREMENTS and operation.method.upper() == "POST":
            _check_measurements_response(response.request.body, response, stats)

    try:
        fuzz()
    except Unsatisfiable:
        if mode is not GenerationMode.NEGATIVE:
            raise
        stats.examples[key] += 0  # nothing in the operation can be made schema-breaking
    except Exception as exc:
        stats.failures.append(f"{key}: {exc}")
        raise


@pytest.mark.timeout(max(300, int(BUDGET_S * 3)))
@pytest.mark.parametrize("label", OPERATIONS)
def test_fuzz_operation(target: Target, label: str) -> None:
    """Positive and negative examples of one operation; near-valid ones for readings."""
    target.fuzz(label)


def test_zz_every_measurement_that_landed_is_valid(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    """What reached Kafka during the fuzz run is all valid. Normally the last test of the
    module; run alone or first, it fuzzes the operations not fuzzed yet itself."""
    for label in OPERATIONS:
        target.fuzz(label)
    produced = landed(target.kafka_bootstrap, target.start_offsets)
    invalid = [(m.event_id, p) for m in produced if (p := problems_of(m))]
    missing = target.stats.accepted_event_ids - {m.event_id for m in produced}
    stats = target.stats
    lines = [
        f"fuzz: {len(stats.statuses)} operations, {sum(stats.examples.values())} examples "
        f"in {time.monotonic() - stats.started:.0f} s (budget {BUDGET_S:.0f} s, "
        f"max {MAX_EXAMPLES} per operation and mode)",
        *(f"  {key}: {n}" for key, n in sorted(stats.examples.items())),
        *(
            f"  {label}: statuses {dict(sorted(counts.items()))}"
            for label, counts in sorted(stats.statuses.items())
        ),
        f"  readings judged by the oracle: {stats.judged_items}, accepted"
        f" {stats.accepted_items}; undecided {stats.undecided_items}",
        f"  measurements landed in Kafka: {len(produced)}, invalid {len(invalid)}, "
        f"accepted but missing {len(missing)}",
        f"  failures: {len(stats.failures)}",
    ]
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert not invalid, invalid[:5]
    assert not missing, sorted(missing)[:5]
    assert set(stats.statuses) == set(OPERATIONS), "some operations were never called"
    assert 0 < stats.accepted_items < stats.judged_items, "readings were not fuzzed both ways"
