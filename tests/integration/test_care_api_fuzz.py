"""Fuzz every operation of the care-team API's OpenAPI spec with schemathesis, on real Kafka.

The real care-team app runs in-process (schemathesis' ASGI transport runs its lifespan: the
command producer, the topic follower and the audit sink connect to the session's Kafka).
For every operation the spec has (a new route is picked up without editing this file),
schema-conforming and schema-breaking requests are sent twice over:

- **as an admin**: no 5xx (Kafka is up), and status, content type, headers and body
  conform to the spec;
- **as a clinician of another team** (a team no patient is assigned to): no 2xx on any
  operation that names a patient, an alert or a silence, and lists answer with no items.
  The patients the generator invents belong to nobody's team, and the alert, silence and
  patient ids it draws also include ones of a real patient of team ``ward-b``.

``PGHD_FUZZ_BUDGET_S`` (default 150) bounds the run as for the ingest fuzz; at least a
few examples of each operation and caller run whatever the budget.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from kafka import KafkaProducer
from schemathesis import GenerationMode
from schemathesis.python import asgi
from schemathesis.transport import requests as schemathesis_requests

from alerts.api.app import create_app
from alerts.api.settings import CareApiSettings
from deploy.local.harness import wait_for
from deploy.local.influxdb import InfluxServer
from pghd import topics
from pghd.access import hash_token
from pghd.enrollment import Action, Change, assign, enroll
from tests.integration.test_api_fuzz import CHECKS, _operations, _tolerant
from tests.integration.test_care_api import make_alert, publish

BUDGET_S = float(os.environ.get("PGHD_FUZZ_BUDGET_S", "150"))
MAX_EXAMPLES = int(os.environ.get("PGHD_FUZZ_MAX_EXAMPLES", "60"))
RUN = uuid.uuid4().hex[:8]
THEIRS = f"fuzz-care-{RUN}"
ALERT = make_alert(THEIRS)
LISTS = {"GET /v1/alerts", "GET /v1/silences"}
CALLERS = {"admin": f"fuzz-admin-{RUN}", "stranger": f"fuzz-stranger-{RUN}"}


def _spec_operations() -> list[str]:
    spec = create_app(CareApiSettings()).openapi()
    return [
        f"{method.upper()} {path}"
        for path, item in spec["paths"].items()
        for method in item
        if "401" in item[method].get("responses", {})
    ]


OPERATIONS = _spec_operations()


@dataclass
class Target:
    app: Any
    schema: Any
    started: float = field(default_factory=time.monotonic)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)

    def deadline(self) -> float:
        """Each operation and caller gets an equal share of what is left of the budget."""
        done = sum(1 for _ in self.statuses)
        left = max(BUDGET_S - (time.monotonic() - self.started), 0.0)
        return time.monotonic() + left / max(len(OPERATIONS) * len(CALLERS) - done, 1)


def _enroll_in_ward_b(bootstrap: str) -> None:
    """THEIRS, assigned to team ward-b, straight onto the enrollments topic."""
    at = datetime.now(UTC)
    change = Change(change_id=f"c-{RUN}", action=Action.ENROLL, at=at, by="fuzz")
    enrollment = assign(
        enroll(None, patient_id=THEIRS, change=change),
        team="ward-b",
        change=change.model_copy(update={"action": Action.ASSIGN}),
    )
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        producer.send(topics.ENROLLMENTS, key=THEIRS.encode(), value=enrollment.to_record()).get(
            timeout=10
        )
    finally:
        producer.close()


@pytest.fixture(scope="module")
def target(
    kafka_bootstrap: str, influx: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    _enroll_in_ward_b(kafka_bootstrap)
    publish(kafka_bootstrap, (ALERT.fingerprint, ALERT))
    users: Path = tmp_path_factory.mktemp("care-fuzz") / "users.json"
    users.write_text(
        json.dumps(
            {
                "users": {
                    "fuzz-admin": {"role": "admin", "token_sha256": [hash_token(CALLERS["admin"])]},
                    "fuzz-stranger": {
                        "role": "clinician",
                        "teams": ["team-without-patients"],
                        "token_sha256": [hash_token(CALLERS["stranger"])],
                    },
                }
            }
        )
    )
    app = create_app(
        CareApiSettings(
            kafka_bootstrap=kafka_bootstrap,
            users_file=users,
            retry_after_s=1,
            # /fhir and /v1/me read the real InfluxDB: an admin's search is answered, not 503
            influx_url=influx.url,
            influx_token=influx.token,
            influx_org=influx.org,
            influx_bucket=influx.bucket,
        )
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    assert sorted(
        label
        for label, op in _operations(schema).items()
        if "401" in op.definition.raw["responses"]
    ) == sorted(OPERATIONS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            schemathesis_requests,
            "_count_opened_connections",
            _tolerant(schemathesis_requests._count_opened_connections),
        )
        try:
            yield Target(app=app, schema=schema)
        finally:
            asgi.shutdown_lifespans()


def _wait_ready(app: Any) -> None:
    """Start the lifespan and wait until the read model holds THEIRS's team and alert."""
    headers = {"Authorization": f"Bearer {CALLERS['admin']}"}
    with asgi.get_client(app) as client:
        wait_for(
            lambda: (
                True
                if client.get(f"/v1/alerts/{ALERT.alert_id}", headers=headers).status_code == 200
                else None
            ),
            timeout=60,
            what="the care API's read model (Kafka followed) and audit sink",
            every=0.2,
        )


def _real_ids(label: str) -> dict[str, Any]:
    return {
        key: value
        for key, value in (
            ("patient_id", THEIRS),
            ("alert_id", ALERT.alert_id),
        )
        if "{" + key + "}" in label
    }


def _stranger_check(label: str, response: Any) -> None:
    status = response.status_code
    if label in LISTS:
        if status == 200:
            assert response.json()["items"] == [], f"{label} showed a stranger {response.text}"
        return
    assert not 200 <= status < 300, f"{label} answered a stranger {status}: {response.text}"


@pytest.mark.timeout(max(300, int(BUDGET_S * 3)))
@pytest.mark.parametrize("caller", sorted(CALLERS))
@pytest.mark.parametrize("label", OPERATIONS)
def test_fuzz_care_operation(target: Target, label: str, caller: str) -> None:
    """Positive and negative examples of one operation, as an admin or as a stranger."""
    _wait_ready(target.app)
    operation = _operations(target.schema)[label]
    headers = {"Authorization": f"Bearer {CALLERS[caller]}"}
    deadline = target.deadline()
    key = f"{label} as {caller}"
    counts = target.statuses.setdefault(key, Counter())
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        real = _real_ids(label) if mode is GenerationMode.POSITIVE else {}
        strategies = [operation.as_strategy(mode)]
        if real:
            strategies.append(operation.as_strategy(mode, path_parameters=real))

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            print_blob=True,
        )
        @given(case=st.one_of(strategies))
        def fuzz(case: Any) -> None:
            if time.monotonic() > deadline and sum(counts.values()) >= 4:
                return
            response = case.call(headers=headers)
            counts[response.status_code] += 1
            if caller == "admin":
                case.validate_response(response, checks=CHECKS, headers=headers)
            else:
                _stranger_check(label, response)

        try:
            fuzz()
        except Unsatisfiable:
            if mode is not GenerationMode.NEGATIVE:
                raise


def test_zz_fuzz_summary(target: Target, capsys: pytest.CaptureFixture[str]) -> None:
    """Every operation was called as both callers; the figures are printed."""
    lines = [
        f"care API fuzz: {len(target.statuses)} operation x caller runs in"
        f" {time.monotonic() - target.started:.0f} s (budget {BUDGET_S:.0f} s)",
        *(
            f"  {key}: statuses {dict(sorted(c.items()))}"
            for key, c in sorted(target.statuses.items())
        ),
    ]
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    expected = {f"{label} as {caller}" for label in OPERATIONS for caller in CALLERS}
    assert expected <= set(target.statuses), expected - set(target.statuses)
    assert all(sum(c.values()) > 0 for c in target.statuses.values())
    stranger_2xx = {
        key: c
        for key, c in target.statuses.items()
        if key.endswith("as stranger")
        and key.split(" as ")[0] not in LISTS
        and any(200 <= s < 300 for s in c)
    }
    assert not stranger_2xx, stranger_2xx
    admin_5xx = {k: c for k, c in target.statuses.items() if any(s >= 500 for s in c)}
    assert not admin_5xx, admin_5xx
