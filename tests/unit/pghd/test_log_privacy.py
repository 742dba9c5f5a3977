"""Access logs keep paths, not query strings (tokens, patient ids)."""

from __future__ import annotations

import logging
import logging.config

import pytest

from pghd.log_privacy import access_log_config, scrub_query
from pghd.pseudonym import pseudonym


def test_the_query_string_is_dropped() -> None:
    assert scrub_query("/v1/webhooks/acme?hub.verify_token=s3cret") == "/v1/webhooks/acme?…"
    assert scrub_query("/v1/alerts") == "/v1/alerts"


def test_a_patient_id_in_the_path_is_pseudonymised() -> None:
    scrubbed = scrub_query("/v1/patients/p-1/care-plan")
    assert scrubbed == f"/v1/patients/{pseudonym('p-1')}/care-plan"


def test_uvicorns_access_log_is_written_without_the_query(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logging.config.dictConfig(access_log_config())
    access = logging.getLogger("uvicorn.access")
    # the call uvicorn's httptools/h11 protocols make for every request
    access.info(
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:50000",
        "GET",
        "/v1/webhooks/acme?hub.mode=subscribe&hub.verify_token=s3cret&patient_id=p-1",
        "1.1",
        200,
    )
    out = capsys.readouterr().out
    assert "GET /v1/webhooks/acme?… HTTP/1.1" in out
    assert "s3cret" not in out and "p-1" not in out
